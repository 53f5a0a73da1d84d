// PluginPeft: the run's PEFT plugin (eng_peft_vtable + self) behind the engine-internal interface rt::Peft
// (engine/runtime/peft.hpp), plus what only the engine asks of it (attach, merge). It creates the plugin
// instance from its vtable with the recipe options (vtable->create) and destroys it with itself; calls go
// through eng_tensor/eng_param handles with a context of the HostSession, and a failing status becomes an
// engine::Error carrying the plugin's message (plugin_call.hpp).
#pragma once

#include <string>

#include "engine/abi/peft.h"
#include "engine/host/host_session.hpp"

namespace engine::host {

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

}  // namespace engine::host
