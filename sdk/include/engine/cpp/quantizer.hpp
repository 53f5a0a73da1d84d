// engine/cpp/quantizer.hpp: write a quantizer plugin (ENG_KIND_QUANTIZER) as a class.
//
// The quantizer's storage for one weight is a Quantizer::State subclass it allocates in quantize(); the
// engine keeps it with the parameter and hands it back to linear/dequantize (cast it back with static_cast).
//   struct Nf4Weight : engine::sdk::Quantizer::State { Tensor codes, scales; };
//
// Mirrors eng_quantizer_vtable (engine/abi/quantizer.h). save_state/load_state are optional: override both
// or neither; the table entries stay NULL when they are not overridden.
#pragma once

#include <memory>
#include <string>

#include "engine/abi/quantizer.h"
#include "engine/cpp/plugin.hpp"

namespace engine::sdk {

class Quantizer {
 public:
  class State {
   public:
    virtual ~State() = default;
  };

  virtual ~Quantizer() = default;
  // True if this parameter should be stored quantized.
  virtual bool takes(const ParamInfo& param) = 0;
  // value: the full-precision weight (out,in) -> the quantizer's storage for it.
  virtual std::unique_ptr<State> quantize(Host& host, Param param, const Tensor& value) = 0;
  // x (..., in) -> x W^T (..., out) with W in quantized storage; differentiable in x (use a custom op).
  virtual Tensor linear(Host& host, State& state, const Tensor& x) = 0;
  // The weight back in `dtype` (merging adapters, export, debugging).
  virtual Tensor dequantize(Host& host, State& state, eng_dtype dtype) = 0;
  // Bytes of storage per weight element, scales included.
  virtual double bytes_per_element() = 0;
  // (optional) Save the storage of one parameter under keys starting with prefix.
  virtual void save_state(Host& host, State& state, eng_state st, const std::string& prefix) {
    (void)host, (void)state, (void)st, (void)prefix;
    throw Error("this quantizer cannot save its state", ENG_ERR_UNSUPPORTED);
  }
  // (optional, ABI 1.1) Whether `stored_name`, a tensor of the checkpoint being loaded, belongs to this
  // parameter's pre-quantized storage; the loader then calls load_state with everything it owns (and the
  // parameter's own name) instead of quantize.
  virtual bool owns(const ParamInfo& param, const std::string& stored_name) {
    (void)param, (void)stored_name;
    return false;
  }
  // (optional) Load what save_state wrote (or a pre-quantized checkpoint's tensors, see owns).
  virtual std::unique_ptr<State> load_state(Host& host, Param param, eng_state st,
                                            const std::string& prefix) {
    (void)host, (void)param, (void)st, (void)prefix;
    throw Error("this quantizer cannot load a saved state", ENG_ERR_UNSUPPORTED);
  }
};

namespace detail {

template <typename T>
struct QuantizerAdapter {
  static_assert(std::is_base_of_v<Quantizer, T>,
                "ENGINE_REGISTER_QUANTIZER: the class must derive from engine::sdk::Quantizer");
  static_assert(
      std::is_constructible_v<T, Host&, const std::string&>,
      "ENGINE_REGISTER_QUANTIZER: the class needs a constructor (Host&, const std::string& options_json)");
  static constexpr bool kSaves = ENGINE_SDK_OVERRIDES(T, Quantizer, save_state);
  static constexpr bool kLoads = ENGINE_SDK_OVERRIDES(T, Quantizer, load_state);
  static_assert(kSaves == kLoads, "a quantizer overrides save_state and load_state together, or neither");
  static constexpr bool kOwns = ENGINE_SDK_OVERRIDES(T, Quantizer, owns);
  static_assert(!kOwns || kLoads, "a quantizer that owns stored names must override load_state to read them");

  static Quantizer::State& state_of(void* state) {
    if (state == nullptr) throw Error("the engine passed a NULL quantizer state", ENG_ERR_INTERNAL);
    return *static_cast<Quantizer::State*>(state);
  }

  static eng_status create(const eng_host_api* host, const eng_ctx* ctx, const char* options_json,
                           void** self) noexcept {
    return detail::create<T>(host, ctx, self, str(options_json));
  }
  static int32_t takes(void* self, const eng_param_info* param) noexcept {
    int32_t out = 0;
    guard(api_of<T>(self), nullptr,
          [&] { out = self_of<T>(self).obj.takes(ParamInfo::from_abi(read_struct(param))) ? 1 : 0; });
    return out;
  }
  static eng_status quantize(void* self, const eng_ctx* ctx, eng_param param, eng_tensor value,
                             void** state) noexcept {
    if (state == nullptr) return ENG_ERR_INVALID_ARGUMENT;
    *state = nullptr;
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      std::unique_ptr<Quantizer::State> s = in.obj.quantize(h, Param(param), h.borrow(value));
      if (!s) throw Error("the quantizer returned no state for a weight it takes", ENG_ERR_INTERNAL);
      *state = s.release();
    });
  }
  static eng_status linear(void* self, const eng_ctx* ctx, void* state, eng_tensor x,
                           eng_tensor* out) noexcept {
    if (out == nullptr) return ENG_ERR_INVALID_ARGUMENT;
    *out = nullptr;
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      *out = in.obj.linear(h, state_of(state), h.borrow(x)).release();
    });
  }
  static eng_status dequantize(void* self, const eng_ctx* ctx, void* state, eng_dtype dtype,
                               eng_tensor* out) noexcept {
    if (out == nullptr) return ENG_ERR_INVALID_ARGUMENT;
    *out = nullptr;
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      *out = in.obj.dequantize(h, state_of(state), dtype).release();
    });
  }
  static void free_state(void*, void* state) noexcept { delete static_cast<Quantizer::State*>(state); }
  static double bytes_per_element(void* self) noexcept {
    double out = 0.0;
    guard(api_of<T>(self), nullptr, [&] { out = self_of<T>(self).obj.bytes_per_element(); });
    return out;
  }
  static int32_t owns(void* self, const eng_param_info* param, const char* stored_name) noexcept {
    int32_t out = 0;
    guard(api_of<T>(self), nullptr, [&] {
      out = self_of<T>(self).obj.owns(ParamInfo::from_abi(read_struct(param)), str(stored_name)) ? 1 : 0;
    });
    return out;
  }
  static eng_status save_state(void* self, const eng_ctx* ctx, void* state, eng_state st,
                               const char* prefix) noexcept {
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      in.obj.save_state(h, state_of(state), st, str(prefix));
    });
  }
  static eng_status load_state(void* self, const eng_ctx* ctx, eng_param param, eng_state st,
                               const char* prefix, void** state) noexcept {
    if (state == nullptr) return ENG_ERR_INVALID_ARGUMENT;
    *state = nullptr;
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      std::unique_ptr<Quantizer::State> s = in.obj.load_state(h, Param(param), st, str(prefix));
      if (!s) throw Error("the quantizer's load_state returned no state", ENG_ERR_INTERNAL);
      *state = s.release();
    });
  }
  static eng_quantizer_vtable vtable() noexcept {
    eng_quantizer_vtable v{};
    v.struct_size = sizeof(v);
    v.create = &create;
    v.destroy = &detail::destroy<T>;
    v.takes = &takes;
    v.quantize = &quantize;
    v.linear = &linear;
    v.dequantize = &dequantize;
    v.free_state = &free_state;
    v.bytes_per_element = &bytes_per_element;
    v.save_state = kSaves ? &save_state : nullptr;
    v.load_state = kLoads ? &load_state : nullptr;
    v.owns = kOwns ? &owns : nullptr;
    return v;
  }
};

}  // namespace detail
}  // namespace engine::sdk

// ENGINE_REGISTER_QUANTIZER(Class, "name", "1.2.3", "one-line description", schema_json, capabilities)
#define ENGINE_REGISTER_QUANTIZER(Class, name, version, description, schema_json, caps)                 \
  ENGINE_SDK_DEFINE_NEGOTIATE(::engine::sdk::detail::QuantizerAdapter<Class>, ENG_KIND_QUANTIZER, name, \
                              version, description, schema_json, caps)
