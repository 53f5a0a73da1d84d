#include "engine/host/plugin_quantizer.hpp"

#include <cstddef>

#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"
#include "engine/host/param_info.hpp"
#include "engine/host/plugin_call.hpp"

namespace engine::host {

PluginQuantizer::PluginQuantizer(HostSession& session, const eng_host_api* host,
                                 const eng_quantizer_vtable* vtable, std::string name,
                                 const std::string& options_json)
    : session_(&session), vt_(vtable), name_(std::move(name)) {
  if (vt_ == nullptr || vt_->struct_size < offsetof(eng_quantizer_vtable, save_state))
    fail("quantizer plugin {}: its function table is missing or older than ABI v1", name_);
  eng_ctx ctx = session.context(false);
  session.clear_error();
  check_call(session, vt_->create(host, &ctx, options_json.c_str(), &self_), name_, "create");
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
  check_call(*session_, vt_->quantize(self_, &ctx, param_handle(param), v.get(), &state), name_,
             ("quantize " + param.name()).c_str());
  return state;
}

rt::Tensor PluginQuantizer::linear(void* state, const rt::Tensor& x) {
  OwnedHandle in(x), out;
  eng_ctx ctx = session_->context(session_->tape().grad_enabled());
  session_->clear_error();
  check_call(*session_, vt_->linear(self_, &ctx, state, in.get(), out.out()), name_, "linear");
  return returned_tensor(out, name_, "linear");
}

rt::Tensor PluginQuantizer::dequantize(void* state, rt::DType dtype) {
  OwnedHandle out;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check_call(*session_, vt_->dequantize(self_, &ctx, state, dtype, out.out()), name_, "dequantize");
  return returned_tensor(out, name_, "dequantize");
}

void PluginQuantizer::free_state(void* state) noexcept {
  if (vt_->free_state != nullptr) vt_->free_state(self_, state);
}

bool PluginQuantizer::owns(const rt::Param& param, const std::string& stored_name) {
  // a 1.0 plugin's table ends before `owns`
  if (vt_->struct_size < offsetof(eng_quantizer_vtable, owns) + sizeof(vt_->owns) || vt_->owns == nullptr)
    return false;
  eng_param_info info = param_info(param);
  return vt_->owns(self_, &info, stored_name.c_str()) != 0;
}

void* PluginQuantizer::load_state(rt::Param& param, rt::StateDict& st, const std::string& prefix) {
  if (vt_->load_state == nullptr)
    fail_with(ENG_ERR_UNSUPPORTED, "quantizer plugin {} cannot load a pre-quantized weight ({}): it has no load_state",
              name_, param.name());
  void* state = nullptr;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check_call(*session_, vt_->load_state(self_, &ctx, param_handle(param), state_handle(st), prefix.c_str(), &state),
             name_, ("load_state " + param.name()).c_str());
  return state;
}

void PluginQuantizer::save_state(void* state, rt::StateDict& st, const std::string& prefix) {
  if (vt_->save_state == nullptr)
    fail_with(ENG_ERR_UNSUPPORTED, "quantizer plugin {} cannot save its quantized weights ({}): it has no save_state",
              name_, prefix);
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check_call(*session_, vt_->save_state(self_, &ctx, state, state_handle(st), prefix.c_str()), name_,
             ("save_state " + prefix).c_str());
}

}  // namespace engine::host
