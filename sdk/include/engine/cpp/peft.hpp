// engine/cpp/peft.hpp: write a parameter-efficient fine-tuning plugin (ENG_KIND_PEFT) as a class.
//
// attach() walks host.params(), declares the adapters (host.declare) and calls host.peft_attach(target,
// cookie) for each target linear; the engine passes that cookie back to linear() and merge(). The cookie is
// the plugin's own pointer (e.g. to its per-target record), valid as long as the plugin instance.
//
// Mirrors eng_peft_vtable (engine/abi/peft.h). merge is needed only with ENG_PEFT_CAP_MERGE.
#pragma once

#include <string>

#include "engine/abi/peft.h"
#include "engine/cpp/plugin.hpp"

namespace engine::sdk {

class Peft {
 public:
  virtual ~Peft() = default;
  // After the model declared its parameters: choose targets, declare adapters, host.peft_attach each.
  virtual void attach(Host& host) = 0;
  // base_out = linear(x, base weight) already computed -> base_out + the adapter's term (same shape).
  virtual Tensor linear(Host& host, void* cookie, const Tensor& x, const Tensor& base_out) = 0;
  // weight: the dense base weight (out,in) fp32 -> weight with the adapter merged in.
  virtual Tensor merge(Host& host, void* cookie, const Tensor& weight) {
    (void)host, (void)cookie, (void)weight;
    throw Error("this PEFT method cannot merge its adapters into the base weights", ENG_ERR_UNSUPPORTED);
  }
  // Write the adapter in the reference format (PEFT: adapter_config.json + adapter_model.safetensors).
  virtual void save(Host& host, const std::string& dir, const std::string& base_model_path) = 0;
  // Load adapter values written by save (or by the reference implementation) into the declared parameters.
  virtual void load(Host& host, const std::string& dir) = 0;
};

namespace detail {

template <typename T>
struct PeftAdapter {
  static_assert(std::is_base_of_v<Peft, T>,
                "ENGINE_REGISTER_PEFT: the class must derive from engine::sdk::Peft");
  static_assert(
      std::is_constructible_v<T, Host&, const std::string&>,
      "ENGINE_REGISTER_PEFT: the class needs a constructor (Host&, const std::string& options_json)");

  static eng_status create(const eng_host_api* host, const eng_ctx* ctx, const char* options_json,
                           void** self) noexcept {
    return detail::create<T>(host, ctx, self, str(options_json));
  }
  static eng_status attach(void* self, const eng_ctx* ctx) noexcept {
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      in.obj.attach(h);
    });
  }
  static eng_status linear(void* self, const eng_ctx* ctx, void* cookie, eng_tensor x, eng_tensor base_out,
                           eng_tensor* out) noexcept {
    if (out == nullptr) return ENG_ERR_INVALID_ARGUMENT;
    *out = nullptr;
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      *out = in.obj.linear(h, cookie, h.borrow(x), h.borrow(base_out)).release();
    });
  }
  static eng_status merge(void* self, const eng_ctx* ctx, void* cookie, eng_tensor weight,
                          eng_tensor* out) noexcept {
    if (out == nullptr) return ENG_ERR_INVALID_ARGUMENT;
    *out = nullptr;
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      *out = in.obj.merge(h, cookie, h.borrow(weight)).release();
    });
  }
  static eng_status save(void* self, const eng_ctx* ctx, const char* dir,
                         const char* base_model_path) noexcept {
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      in.obj.save(h, str(dir), str(base_model_path));
    });
  }
  static eng_status load(void* self, const eng_ctx* ctx, const char* dir) noexcept {
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      in.obj.load(h, str(dir));
    });
  }
  static eng_peft_vtable vtable() noexcept {
    eng_peft_vtable v{};
    v.struct_size = sizeof(v);
    v.create = &create;
    v.destroy = &detail::destroy<T>;
    v.attach = &attach;
    v.linear = &linear;
    v.merge = &merge;
    v.save = &save;
    v.load = &load;
    return v;
  }
};

}  // namespace detail
}  // namespace engine::sdk

// ENGINE_REGISTER_PEFT(Class, "name", "1.2.3", "one-line description", schema_json, capabilities)
#define ENGINE_REGISTER_PEFT(Class, name, version, description, schema_json, caps)                     \
  ENGINE_SDK_DEFINE_NEGOTIATE(::engine::sdk::detail::PeftAdapter<Class>, ENG_KIND_PEFT, name, version, \
                              description, schema_json, caps)
