// PluginQuantizer / PluginPeft: the run's quantizer and PEFT plugins behind the engine-internal interfaces
// rt::Quantizer and rt::Peft (engine/runtime/weight_plugins.hpp). Each wrapper creates the plugin instance
// from its vtable with the recipe options (vtable->create) and destroys it with itself; calls go through
// eng_tensor/eng_param handles with a context of the HostSession, and a failing status becomes an
// engine::Error carrying the plugin's message.
#pragma once

#include <string>

#include "engine/abi/peft.h"
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

  const eng_quantizer_vtable& vtable() const { return *vt_; }
  void* self() const { return self_; }

 private:
  HostSession* session_;
  const eng_quantizer_vtable* vt_;
  std::string name_;
  void* self_ = nullptr;
};

class PluginPeft final : public rt::Peft {
 public:
  PluginPeft(HostSession& session, const eng_host_api* host, const eng_peft_vtable* vtable, std::string name,
             const std::string& options_json);
  ~PluginPeft() override;
  PluginPeft(const PluginPeft&) = delete;
  PluginPeft& operator=(const PluginPeft&) = delete;

  std::string name() const override { return name_; }
  // After the model declared its parameters: the plugin picks targets, declares adapters, attaches cookies.
  void attach();
  rt::Tensor linear(void* cookie, const rt::Tensor& x, const rt::Tensor& base_out) override;
  // weight (out, in) fp32 -> weight with the adapter merged in.
  rt::Tensor merge(void* cookie, const rt::Tensor& weight);

  const eng_peft_vtable& vtable() const { return *vt_; }
  void* self() const { return self_; }

 private:
  HostSession* session_;
  const eng_peft_vtable* vt_;
  std::string name_;
  void* self_ = nullptr;
};

// The eng_param_info of a parameter (name valid while the store lives).
eng_param_info param_info(const rt::Param& p);

}  // namespace engine::host
