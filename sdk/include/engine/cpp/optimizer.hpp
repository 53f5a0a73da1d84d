// engine/cpp/optimizer.hpp: write an optimizer plugin (ENG_KIND_OPTIMIZER) as a class.
//
//   class Sgd : public engine::sdk::Optimizer {
//    public:
//     Sgd(engine::sdk::Host& host, const std::string& options_json);
//     void add_param(Host&, Param, const eng_param_group&) override;  ...
//   };
//   ENGINE_REGISTER_OPTIMIZER(Sgd, "sgd", "0.1.0", "plain SGD", kSchemaJson, ENG_CAP_DEVICE_CPU)
//
// Mirrors eng_optimizer_vtable (engine/abi/optimizer.h).
#pragma once

#include <string>

#include "engine/abi/optimizer.h"
#include "engine/cpp/plugin.hpp"

namespace engine::sdk {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // The optimizer will step `param` (a local shard under a sharding strategy) with this group's settings.
  virtual void add_param(Host& host, Param param, const eng_param_group& group) = 0;
  // Update every added parameter that has a gradient (host.grad(p) non-empty).
  virtual void step(Host& host, const eng_optim_step& step) = 0;
  // Save / restore all state through host.state_put / host.state_get on `st`.
  virtual void save_state(Host& host, eng_state st) = 0;
  virtual void load_state(Host& host, eng_state st) = 0;
  // Bytes of state per trainable element (memory plan), e.g. 8 for fp32 AdamW.
  virtual double state_bytes_per_element() = 0;
};

namespace detail {

template <typename T>
struct OptimizerAdapter {
  static_assert(std::is_base_of_v<Optimizer, T>,
                "ENGINE_REGISTER_OPTIMIZER: the class must derive from engine::sdk::Optimizer");
  static_assert(
      std::is_constructible_v<T, Host&, const std::string&>,
      "ENGINE_REGISTER_OPTIMIZER: the class needs a constructor (Host&, const std::string& options_json)");

  static eng_status create(const eng_host_api* host, const eng_ctx* ctx, const char* options_json,
                           void** self) noexcept {
    return detail::create<T>(host, ctx, self, str(options_json));
  }
  static eng_status add_param(void* self, const eng_ctx* ctx, eng_param param,
                              const eng_param_group* group) noexcept {
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      in.obj.add_param(h, Param(param), read_struct(group));
    });
  }
  static eng_status step(void* self, const eng_ctx* ctx, const eng_optim_step* s) noexcept {
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      in.obj.step(h, read_struct(s));
    });
  }
  static eng_status save_state(void* self, const eng_ctx* ctx, eng_state st) noexcept {
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      in.obj.save_state(h, st);
    });
  }
  static eng_status load_state(void* self, const eng_ctx* ctx, eng_state st) noexcept {
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      in.obj.load_state(h, st);
    });
  }
  static double state_bytes_per_element(void* self) noexcept {
    double out = 0.0;
    guard(api_of<T>(self), nullptr, [&] { out = self_of<T>(self).obj.state_bytes_per_element(); });
    return out;
  }
  static eng_optimizer_vtable vtable() noexcept {
    eng_optimizer_vtable v{};
    v.struct_size = sizeof(v);
    v.create = &create;
    v.destroy = &detail::destroy<T>;
    v.add_param = &add_param;
    v.step = &step;
    v.save_state = &save_state;
    v.load_state = &load_state;
    v.state_bytes_per_element = &state_bytes_per_element;
    return v;
  }
};

}  // namespace detail
}  // namespace engine::sdk

// ENGINE_REGISTER_OPTIMIZER(Class, "name", "1.2.3", "one-line description", schema_json, capabilities)
#define ENGINE_REGISTER_OPTIMIZER(Class, name, version, description, schema_json, caps)                 \
  ENGINE_SDK_DEFINE_NEGOTIATE(::engine::sdk::detail::OptimizerAdapter<Class>, ENG_KIND_OPTIMIZER, name, \
                              version, description, schema_json, caps)
