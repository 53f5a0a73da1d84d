// OptimizerInstance: the run's optimizer plugin (eng_optimizer_vtable + self) as the trainer sees it. Created
// with the recipe's [optimizer] section; destroyed with itself. A failing status becomes an engine::Error
// carrying the plugin's message.
#pragma once

#include <string>

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
  void check(eng_status s, const eng_ctx& ctx, const char* what) const;

  host::HostSession* session_;
  const eng_optimizer_vtable* vt_;
  std::string name_;
  void* self_ = nullptr;
};

}  // namespace engine::session
