#include "engine/session/optimizer_instance.hpp"

#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"

namespace engine::session {

OptimizerInstance::OptimizerInstance(host::HostSession& session, const plugins::PluginRecord& plugin,
                                     const std::string& options_json)
    : session_(&session), vt_(plugin.table<eng_optimizer_vtable>()), name_(plugin.name), options_json_(options_json) {
  if (vt_ == nullptr || vt_->create == nullptr) fail("optimizer plugin '{}' has no function table", name_);
  part_for(session.run_device());
}

OptimizerInstance::~OptimizerInstance() {
  for (Part& p : parts_)
    if (p.self != nullptr && vt_->destroy != nullptr) vt_->destroy(p.self);
}

OptimizerInstance::Part& OptimizerInstance::part_for(rt::Device& device) {
  for (Part& p : parts_)
    if (p.device == &device) return p;
  host::DeviceScope current(*session_, &device);
  eng_ctx ctx = session_->context(false);
  void* self = nullptr;
  check(vt_->create(host::host_api(), &ctx, options_json_.c_str(), &self), ctx, "create");
  return parts_.emplace_back(Part{&device, self});
}

void OptimizerInstance::check(eng_status s, const eng_ctx& ctx, const char* what) const {
  if (s == ENG_OK) return;
  std::string message = host::host_api()->get_error(&ctx);
  session_->clear_error();
  throw Error(
      fmt::format("optimizer '{}' {} failed: {}", name_, what, message.empty() ? status_name(s) : message),
      s);
}

void OptimizerInstance::add_param(rt::Param& param, double weight_decay, double lr_scale) {
  eng_param_group g{};
  g.struct_size = sizeof g;
  g.weight_decay = weight_decay;
  g.lr_scale = lr_scale;
  Part& part = part_for(session_->params().device_of(param));
  host::DeviceScope current(*session_, part.device);
  eng_ctx ctx = session_->context(false);
  check(vt_->add_param(part.self, &ctx, host::param_handle(param), &g), ctx, "add_param");
}

void OptimizerInstance::step(int64_t step, double lr, double grad_scale) {
  eng_optim_step s{};
  s.struct_size = sizeof s;
  s.step = step;
  s.lr = lr;
  s.grad_scale = grad_scale;
  for (Part& part : parts_) {
    host::DeviceScope current(*session_, part.device);
    eng_ctx ctx = session_->context(false);
    check(vt_->step(part.self, &ctx, &s), ctx, "step");
  }
}

void OptimizerInstance::save_state(rt::StateDict& state) {
  for (Part& part : parts_) {
    host::DeviceScope current(*session_, part.device);
    eng_ctx ctx = session_->context(false);
    check(vt_->save_state(part.self, &ctx, host::state_handle(state)), ctx, "save_state");
  }
}

void OptimizerInstance::load_state(rt::StateDict& state) {
  for (Part& part : parts_) {
    host::DeviceScope current(*session_, part.device);
    eng_ctx ctx = session_->context(false);
    check(vt_->load_state(part.self, &ctx, host::state_handle(state)), ctx, "load_state");
  }
}

double OptimizerInstance::state_bytes_per_element() {
  return vt_->state_bytes_per_element != nullptr ? vt_->state_bytes_per_element(parts_.front().self) : 0.0;
}

}  // namespace engine::session
