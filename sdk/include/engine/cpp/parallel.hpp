// engine/cpp/parallel.hpp: write a parallel strategy plugin (ENG_KIND_PARALLEL) as a class.
//
// setup() is required; every hook is optional and its table entry stays NULL unless the class overrides it,
// so the engine skips hooks a strategy does not use.
//
// Mirrors eng_parallel_vtable (engine/abi/parallel.h).
#pragma once

#include <string>

#include "engine/abi/parallel.h"
#include "engine/cpp/plugin.hpp"

namespace engine::sdk {

class Parallel {
 public:
  virtual ~Parallel() = default;
  // After parameters are declared and before they are loaded: decide placement.
  virtual void setup(Host& host) = 0;
  // (optional) Around each decoder block, in forward and in backward (gather before, free after).
  virtual void before_block(Host& host, int32_t block, eng_phase phase) {
    (void)host, (void)block, (void)phase;
  }
  virtual void after_block(Host& host, int32_t block, eng_phase phase) {
    (void)host, (void)block, (void)phase;
  }
  // (optional) The gradient of `param` is complete for this micro-batch.
  virtual void grad_ready(Host& host, Param param) { (void)host, (void)param; }
  // (optional) All gradients of the accumulated batch are in: reduce them.
  virtual void before_step(Host& host) { (void)host; }
  virtual void after_step(Host& host) { (void)host; }
  // (optional) Strategy state in checkpoints.
  virtual void save_state(Host& host, eng_state st) { (void)host, (void)st; }
  virtual void load_state(Host& host, eng_state st) { (void)host, (void)st; }
  // (optional, ABI 1.1) The rank whose optimizer steps this trainable parameter (-1: every rank). Override
  // it to shard the optimizer state: the engine then frees the others' gradients after before_step, and
  // after_step must make the replicas equal again (broadcast each parameter from its owner).
  virtual int32_t param_owner(Host& host, Param param) { return (void)host, (void)param, -1; }
  // (optional, ABI 1.1) This rank's data-parallel group and the number of groups: ranks of one group train
  // on the same rows (tensor parallelism). Not overridden: every rank is its own group.
  virtual void data_parallel(Host& host, int32_t* dp_rank, int32_t* dp_size) {
    (void)host, (void)dp_rank, (void)dp_size;
  }
  // (optional, ABI 1.1) Pipeline parallelism: this rank's stage (see eng_pipeline_stage), asked right after
  // setup with the model's sizes; place each parameter on its stage here (host.param_set_holder). Not
  // overridden: no pipeline.
  virtual eng_pipeline_stage pipeline(Host& host, const eng_model_info& model) {
    (void)host, (void)model;
    return eng_pipeline_stage{};
  }
  // (optional, ABI 1.1) Layer placement over the devices of one process (see eng_layer_map): set
  // map.devices, map.block_device[0..n_layers) and map.param_device[0..n_params) (the order of
  // host.params()). Not overridden: one device.
  virtual void place_layers(Host& host, const eng_model_info& model, eng_layer_map& map) {
    (void)host, (void)model, (void)map;
  }
};

namespace detail {

template <typename T>
struct ParallelAdapter {
  static_assert(std::is_base_of_v<Parallel, T>,
                "ENGINE_REGISTER_PARALLEL: the class must derive from engine::sdk::Parallel");
  static_assert(
      std::is_constructible_v<T, Host&, const std::string&>,
      "ENGINE_REGISTER_PARALLEL: the class needs a constructor (Host&, const std::string& options_json)");

  template <typename F>
  static eng_status call(void* self, const eng_ctx* ctx, F&& f) noexcept {
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      f(in.obj, h);
    });
  }
  static eng_status create(const eng_host_api* host, const eng_ctx* ctx, const char* options_json,
                           void** self) noexcept {
    return detail::create<T>(host, ctx, self, str(options_json));
  }
  static eng_status setup(void* self, const eng_ctx* ctx) noexcept {
    return call(self, ctx, [](T& o, Host& h) { o.setup(h); });
  }
  static eng_status before_block(void* self, const eng_ctx* ctx, int32_t block, eng_phase phase) noexcept {
    return call(self, ctx, [&](T& o, Host& h) { o.before_block(h, block, phase); });
  }
  static eng_status after_block(void* self, const eng_ctx* ctx, int32_t block, eng_phase phase) noexcept {
    return call(self, ctx, [&](T& o, Host& h) { o.after_block(h, block, phase); });
  }
  static eng_status grad_ready(void* self, const eng_ctx* ctx, eng_param param) noexcept {
    return call(self, ctx, [&](T& o, Host& h) { o.grad_ready(h, Param(param)); });
  }
  static eng_status before_step(void* self, const eng_ctx* ctx) noexcept {
    return call(self, ctx, [](T& o, Host& h) { o.before_step(h); });
  }
  static eng_status after_step(void* self, const eng_ctx* ctx) noexcept {
    return call(self, ctx, [](T& o, Host& h) { o.after_step(h); });
  }
  static eng_status save_state(void* self, const eng_ctx* ctx, eng_state st) noexcept {
    return call(self, ctx, [&](T& o, Host& h) { o.save_state(h, st); });
  }
  static eng_status load_state(void* self, const eng_ctx* ctx, eng_state st) noexcept {
    return call(self, ctx, [&](T& o, Host& h) { o.load_state(h, st); });
  }
  static int32_t param_owner(void* self, const eng_ctx* ctx, eng_param param) noexcept {
    int32_t owner = -1;
    const eng_status s = call(self, ctx, [&](T& o, Host& h) { owner = o.param_owner(h, Param(param)); });
    return s == ENG_OK ? owner : -1;
  }
  static eng_status data_parallel(void* self, const eng_ctx* ctx, int32_t* dp_rank, int32_t* dp_size) noexcept {
    return call(self, ctx, [&](T& o, Host& h) { o.data_parallel(h, dp_rank, dp_size); });
  }
  static eng_status pipeline(void* self, const eng_ctx* ctx, const eng_model_info* model,
                             eng_pipeline_stage* out) noexcept {
    if (out == nullptr || model == nullptr) return ENG_ERR_INVALID_ARGUMENT;
    return call(self, ctx, [&](T& o, Host& h) {
      eng_pipeline_stage st = o.pipeline(h, read_struct(model));
      st.struct_size = sizeof(st);
      write_struct(out, st);
    });
  }
  static eng_status place_layers(void* self, const eng_ctx* ctx, const eng_model_info* model,
                                 eng_layer_map* map) noexcept {
    if (map == nullptr || model == nullptr || map->struct_size < sizeof(eng_layer_map))
      return ENG_ERR_INVALID_ARGUMENT;
    return call(self, ctx, [&](T& o, Host& h) { o.place_layers(h, read_struct(model), *map); });
  }
  static eng_parallel_vtable vtable() noexcept {
    eng_parallel_vtable v{};
    v.struct_size = sizeof(v);
    v.create = &create;
    v.destroy = &detail::destroy<T>;
    v.setup = &setup;
    v.before_block = ENGINE_SDK_OVERRIDES(T, Parallel, before_block) ? &before_block : nullptr;
    v.after_block = ENGINE_SDK_OVERRIDES(T, Parallel, after_block) ? &after_block : nullptr;
    v.grad_ready = ENGINE_SDK_OVERRIDES(T, Parallel, grad_ready) ? &grad_ready : nullptr;
    v.before_step = ENGINE_SDK_OVERRIDES(T, Parallel, before_step) ? &before_step : nullptr;
    v.after_step = ENGINE_SDK_OVERRIDES(T, Parallel, after_step) ? &after_step : nullptr;
    v.save_state = ENGINE_SDK_OVERRIDES(T, Parallel, save_state) ? &save_state : nullptr;
    v.load_state = ENGINE_SDK_OVERRIDES(T, Parallel, load_state) ? &load_state : nullptr;
    v.param_owner = ENGINE_SDK_OVERRIDES(T, Parallel, param_owner) ? &param_owner : nullptr;
    v.data_parallel = ENGINE_SDK_OVERRIDES(T, Parallel, data_parallel) ? &data_parallel : nullptr;
    v.pipeline = ENGINE_SDK_OVERRIDES(T, Parallel, pipeline) ? &pipeline : nullptr;
    v.place_layers = ENGINE_SDK_OVERRIDES(T, Parallel, place_layers) ? &place_layers : nullptr;
    return v;
  }
};

}  // namespace detail
}  // namespace engine::sdk

// ENGINE_REGISTER_PARALLEL(Class, "name", "1.2.3", "one-line description", schema_json, capabilities)
#define ENGINE_REGISTER_PARALLEL(Class, name, version, description, schema_json, caps)                \
  ENGINE_SDK_DEFINE_NEGOTIATE(::engine::sdk::detail::ParallelAdapter<Class>, ENG_KIND_PARALLEL, name, \
                              version, description, schema_json, caps)
