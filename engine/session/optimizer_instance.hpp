// OptimizerInstance: the run's optimizer plugin (eng_optimizer_vtable + self) as the trainer sees it. Created
// with the recipe's [optimizer] section; destroyed with itself. A failing status becomes an engine::Error
// carrying the plugin's message.
//
// Under a layer placement the parameters live on several devices: each device's parameters go to a plugin
// instance of their own, created on first use with that device current (so the plugin keeps its state there,
// and each step runs on the device of its tensors); step, save_state and load_state call every instance in
// turn. Optimizer states are keyed by parameter name, so the instances share one state dict.
#pragma once

#include <string>
#include <vector>

#include "engine/abi/optimizer.h"
#include "engine/host/host_session.hpp"
#include "engine/plugins/plugin_registry.hpp"
#include "engine/runtime/state_dict.hpp"

namespace engine::session {

class OptimizerInstance {
 public:
  OptimizerInstance(host::HostSession& session, const plugins::PluginRecord& plugin,
                    const std::string& options_json);
  ~OptimizerInstance();
  OptimizerInstance(const OptimizerInstance&) = delete;
  OptimizerInstance& operator=(const OptimizerInstance&) = delete;

  const std::string& name() const { return name_; }
  void add_param(rt::Param& param, double weight_decay, double lr_scale = 1.0);
  // step: 1-based optimizer step; grad_scale multiplies every gradient (the clipping factor).
  void step(int64_t step, double lr, double grad_scale);
  void save_state(rt::StateDict& state);
  void load_state(rt::StateDict& state);
  double state_bytes_per_element();

 private:
  struct Part {
    rt::Device* device;
    void* self;
  };
  void check(eng_status s, const eng_ctx& ctx, const char* what) const;
  Part& part_for(rt::Device& device);

  host::HostSession* session_;
  const eng_optimizer_vtable* vt_;
  std::string name_;
  std::string options_json_;
  std::vector<Part> parts_;  // parts_[0]: the run's device
};

}  // namespace engine::session
