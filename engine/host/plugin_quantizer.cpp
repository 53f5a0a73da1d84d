#include "engine/host/plugin_weights.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "engine/core/error.hpp"
#include "engine/host/tensor_handle.hpp"

namespace engine::host {

namespace {

eng_param handle_of(rt::Param& p) { return reinterpret_cast<eng_param>(&p); }

// Throws with the plugin's message when a call failed.
void check(HostSession& s, eng_status st, const std::string& plugin, const char* call) {
  if (st != ENG_OK) throw Error(fmt::format("{} plugin: {} failed: {}", plugin, call, s.error()), st);
}

rt::Tensor take(OwnedHandle& h, const std::string& plugin, const char* call) {
  if (h.get() == nullptr) fail("{} plugin: {} returned no tensor", plugin, call);
  return h.get()->tensor;
}

}  // namespace

eng_param_info param_info(const rt::Param& p) {
  eng_param_info info{};
  info.struct_size = sizeof(eng_param_info);
  info.name = p.decl.name.c_str();
  info.ndim = p.decl.shape.ndim;
  for (int i = 0; i < p.decl.shape.ndim; ++i) info.shape[i] = p.decl.shape[i];
  info.dtype = p.decl.dtype;
  info.role = p.decl.role;
  info.flags = (p.flags & ~static_cast<uint32_t>(ENG_PARAM_TRAINABLE | ENG_PARAM_QUANTIZED)) |
               (p.root->flags & (ENG_PARAM_TRAINABLE | ENG_PARAM_QUANTIZED));
  info.block = p.block;
  return info;
}

// ---- PluginQuantizer ------------------------------------------------------------------------------------

PluginQuantizer::PluginQuantizer(HostSession& session, const eng_host_api* host,
                                 const eng_quantizer_vtable* vtable, std::string name,
                                 const std::string& options_json)
    : session_(&session), vt_(vtable), name_(std::move(name)) {
  if (vt_ == nullptr || vt_->struct_size < offsetof(eng_quantizer_vtable, save_state))
    fail("quantizer plugin {}: its function table is missing or older than ABI v1", name_);
  eng_ctx ctx = session.context(false);
  session.clear_error();
  check(session, vt_->create(host, &ctx, options_json.c_str(), &self_), name_, "create");
}

PluginQuantizer::~PluginQuantizer() {
  session_->params().release_quantizer(*this);  // its states die with the plugin instance
  if (session_->quantizer() == this) session_->set_quantizer(nullptr);
  if (vt_->destroy != nullptr) vt_->destroy(self_);
}

bool PluginQuantizer::takes(const rt::Param& param) {
  eng_param_info info = param_info(param);
  return vt_->takes(self_, &info) != 0;
}

void* PluginQuantizer::quantize(rt::Param& param, const rt::Tensor& value) {
  OwnedHandle v(value);
  void* state = nullptr;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check(*session_, vt_->quantize(self_, &ctx, handle_of(param), v.get(), &state), name_,
        ("quantize " + param.name()).c_str());
  return state;
}

rt::Tensor PluginQuantizer::linear(void* state, const rt::Tensor& x) {
  OwnedHandle in(x), out;
  eng_ctx ctx = session_->context(session_->tape().grad_enabled());
  session_->clear_error();
  check(*session_, vt_->linear(self_, &ctx, state, in.get(), out.out()), name_, "linear");
  return take(out, name_, "linear");
}

rt::Tensor PluginQuantizer::dequantize(void* state, rt::DType dtype) {
  OwnedHandle out;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check(*session_, vt_->dequantize(self_, &ctx, state, dtype, out.out()), name_, "dequantize");
  return take(out, name_, "dequantize");
}

void PluginQuantizer::free_state(void* state) noexcept {
  if (vt_->free_state != nullptr) vt_->free_state(self_, state);
}

// ---- PluginPeft -----------------------------------------------------------------------------------------

PluginPeft::PluginPeft(HostSession& session, const eng_host_api* host, const eng_peft_vtable* vtable,
                       std::string name, const std::string& options_json)
    : session_(&session), vt_(vtable), name_(std::move(name)) {
  if (vt_ == nullptr || vt_->struct_size < sizeof(eng_peft_vtable))
    fail("PEFT plugin {}: its function table is missing or older than ABI v1", name_);
  eng_ctx ctx = session.context(false);
  session.clear_error();
  check(session, vt_->create(host, &ctx, options_json.c_str(), &self_), name_, "create");
}

PluginPeft::~PluginPeft() {
  if (session_->peft() == this) session_->set_peft(nullptr);
  if (vt_->destroy != nullptr) vt_->destroy(self_);
}

void PluginPeft::attach() {
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check(*session_, vt_->attach(self_, &ctx), name_, "attach");
}

rt::Tensor PluginPeft::linear(void* cookie, const rt::Tensor& x, const rt::Tensor& base_out) {
  OwnedHandle hx(x), hb(base_out), out;
  eng_ctx ctx = session_->context(session_->tape().grad_enabled());
  session_->clear_error();
  check(*session_, vt_->linear(self_, &ctx, cookie, hx.get(), hb.get(), out.out()), name_, "linear");
  return take(out, name_, "linear");
}

rt::Tensor PluginPeft::merge(void* cookie, const rt::Tensor& weight) {
  OwnedHandle hw(weight), out;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check(*session_, vt_->merge(self_, &ctx, cookie, hw.get(), out.out()), name_, "merge");
  return take(out, name_, "merge");
}

}  // namespace engine::host
