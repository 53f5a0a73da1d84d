// PluginQuantizer: the run's quantizer plugin (eng_quantizer_vtable + self) behind the engine-internal
// interface rt::Quantizer (engine/runtime/quantizer.hpp). It creates the plugin instance from its vtable with
// the recipe options (vtable->create) and destroys it with itself; calls go through eng_tensor/eng_param
// handles with a context of the HostSession, and a failing status becomes an engine::Error carrying the
// plugin's message (plugin_call.hpp).
#pragma once

#include <string>

#include "engine/abi/quantizer.h"
#include "engine/host/host_session.hpp"

namespace engine::host {

class PluginQuantizer final : public rt::Quantizer {
 public:
  PluginQuantizer(HostSession& session, const eng_host_api* host, const eng_quantizer_vtable* vtable,
                  std::string name, const std::string& options_json);
  ~PluginQuantizer() override;
  PluginQuantizer(const PluginQuantizer&) = delete;
  PluginQuantizer& operator=(const PluginQuantizer&) = delete;

  std::string name() const override { return name_; }
  bool takes(const rt::Param& param) override;
  void* quantize(rt::Param& param, const rt::Tensor& value) override;
  rt::Tensor linear(void* state, const rt::Tensor& x) override;
  rt::Tensor dequantize(void* state, rt::DType dtype) override;
  void free_state(void* state) noexcept override;
  bool owns(const rt::Param& param, const std::string& stored_name) override;
  void* load_state(rt::Param& param, rt::StateDict& st, const std::string& prefix) override;
  void save_state(void* state, rt::StateDict& st, const std::string& prefix) override;

  const eng_quantizer_vtable& vtable() const { return *vt_; }
  void* self() const { return self_; }

 private:
  HostSession* session_;
  const eng_quantizer_vtable* vt_;
  std::string name_;
  void* self_ = nullptr;
};

}  // namespace engine::host
