#include "engine/host/plugin_peft.hpp"

#include "engine/core/error.hpp"
#include "engine/host/plugin_call.hpp"

namespace engine::host {

PluginPeft::PluginPeft(HostSession& session, const eng_host_api* host, const eng_peft_vtable* vtable,
                       std::string name, const std::string& options_json)
    : session_(&session), vt_(vtable), name_(std::move(name)) {
  if (vt_ == nullptr || vt_->struct_size < sizeof(eng_peft_vtable))
    fail("PEFT plugin {}: its function table is missing or older than ABI v1", name_);
  eng_ctx ctx = session.context(false);
  session.clear_error();
  check_call(session, vt_->create(host, &ctx, options_json.c_str(), &self_), name_, "create");
}

PluginPeft::~PluginPeft() {
  if (session_->peft() == this) session_->set_peft(nullptr);
  if (vt_->destroy != nullptr) vt_->destroy(self_);
}

void PluginPeft::attach() {
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check_call(*session_, vt_->attach(self_, &ctx), name_, "attach");
}

rt::Tensor PluginPeft::linear(void* cookie, const rt::Tensor& x, const rt::Tensor& base_out) {
  OwnedHandle hx(x), hb(base_out), out;
  eng_ctx ctx = session_->context(session_->tape().grad_enabled());
  session_->clear_error();
  check_call(*session_, vt_->linear(self_, &ctx, cookie, hx.get(), hb.get(), out.out()), name_, "linear");
  return returned_tensor(out, name_, "linear");
}

rt::Tensor PluginPeft::merge(void* cookie, const rt::Tensor& weight) {
  OwnedHandle hw(weight), out;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check_call(*session_, vt_->merge(self_, &ctx, cookie, hw.get(), out.out()), name_, "merge");
  return returned_tensor(out, name_, "merge");
}

}  // namespace engine::host
