// engine/cpp/model.hpp: write a model architecture plugin (ENG_KIND_MODEL) as a class.
//
//   class Tiny : public engine::sdk::Model {
//    public:
//     Tiny(Host& host, const std::string& hf_config_json, const std::string& options_json);
//     eng_model_info info() override;                      // strings owned by the instance
//     void declare_params(Host& host) override;            // host.declare({...}) for every weight
//     Tensor forward(Host& host, const Batch& batch) override;  // -> final normalised hidden (B,T,C)
//     static const char* preset_config(const char* preset);     // optional: "tiny" -> config.json text
//   };
//   ENGINE_REGISTER_MODEL(Tiny, "tiny", "0.1.0", "a tiny decoder", kSchemaJson, ENG_CAP_DEVICE_CPU)
//
// Mirrors eng_model_vtable (engine/abi/model.h).
#pragma once

#include <string>

#include "engine/abi/model.h"
#include "engine/cpp/plugin.hpp"

namespace engine::sdk {

// A forward's input, the handles retained for the call. segment_ids is empty without packing; kv_cache is
// NULL in training.
struct Batch {
  Tensor input_ids;     // (B,T) i32
  Tensor position_ids;  // (B,T) i32
  Tensor segment_ids;   // (B,T) i32 or empty
  eng_kv_cache kv_cache = nullptr;
};

class Model {
 public:
  virtual ~Model() = default;
  // Sizes for planning, loss and generation; the strings must live as long as the model instance.
  virtual eng_model_info info() = 0;
  // Declare every parameter (Hugging Face names) through host.declare.
  virtual void declare_params(Host& host) = 0;
  // batch -> final normalised hidden states (B,T,C); wrap each decoder block in engine::sdk::Block.
  virtual Tensor forward(Host& host, const Batch& batch) = 0;
  // (optional, ABI 1.1) The blocks [first, last) alone, for pipeline parallelism: from batch.input_ids when
  // first == 0 (input empty), else from `input` (B,T,C), the hidden states after block first - 1; the final
  // norm only when last is the number of layers. Not overridden: the model cannot be cut into stages.
  virtual Tensor forward_blocks(Host& host, const Batch& batch, const Tensor& input, int32_t first, int32_t last) {
    (void)host, (void)batch, (void)input, (void)first, (void)last;
    throw Error("forward_blocks is not implemented by this model", ENG_ERR_UNSUPPORTED);
  }
};

namespace detail {

template <typename T, typename = void>
struct has_preset_config : std::false_type {};
template <typename T>
struct has_preset_config<T, std::void_t<decltype(T::preset_config(static_cast<const char*>(nullptr)))>>
    : std::true_type {};

template <typename T>
struct ModelAdapter {
  static_assert(std::is_base_of_v<Model, T>,
                "ENGINE_REGISTER_MODEL: the class must derive from engine::sdk::Model");
  static_assert(
      std::is_constructible_v<T, Host&, const std::string&, const std::string&>,
      "ENGINE_REGISTER_MODEL: the class needs a constructor (Host&, const std::string& hf_config_json, "
      "const std::string& options_json)");

  static eng_status create(const eng_host_api* host, const eng_ctx* ctx, const char* hf_config_json,
                           const char* options_json, void** self) noexcept {
    return detail::create<T>(host, ctx, self, str(hf_config_json), str(options_json));
  }
  static eng_status info(void* self, eng_model_info* out) noexcept {
    if (out == nullptr) return ENG_ERR_INVALID_ARGUMENT;
    return guard(api_of<T>(self), nullptr, [&] {
      eng_model_info value = self_of<T>(self).obj.info();
      value.struct_size = sizeof(value);
      write_struct(out, value);
    });
  }
  static eng_status declare_params(void* self, const eng_ctx* ctx) noexcept {
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      in.obj.declare_params(h);
    });
  }
  static eng_status forward(void* self, const eng_ctx* ctx, const eng_batch* batch,
                            eng_tensor* hidden) noexcept {
    if (hidden == nullptr || batch == nullptr) return ENG_ERR_INVALID_ARGUMENT;
    *hidden = nullptr;
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      eng_batch raw = read_struct(batch);
      Batch b{h.borrow(raw.input_ids), h.borrow(raw.position_ids), h.borrow(raw.segment_ids), raw.kv_cache};
      Tensor out = in.obj.forward(h, b);
      if (!out) throw Error("the model's forward returned an empty tensor", ENG_ERR_INTERNAL);
      *hidden = out.release();
    });
  }
  static eng_status forward_blocks(void* self, const eng_ctx* ctx, const eng_batch* batch, eng_tensor input,
                                   int32_t first, int32_t last, eng_tensor* out) noexcept {
    if (out == nullptr || batch == nullptr) return ENG_ERR_INVALID_ARGUMENT;
    *out = nullptr;
    return guard(api_of<T>(self), ctx, [&] {
      auto& in = self_of<T>(self);
      Host h(in.api, ctx);
      eng_batch raw = read_struct(batch);
      Batch b{h.borrow(raw.input_ids), h.borrow(raw.position_ids), h.borrow(raw.segment_ids), raw.kv_cache};
      Tensor y = in.obj.forward_blocks(h, b, h.borrow(input), first, last);
      if (!y) throw Error("the model's forward_blocks returned an empty tensor", ENG_ERR_INTERNAL);
      *out = y.release();
    });
  }
  static const char* preset_config(const char* preset) noexcept {
    if constexpr (has_preset_config<T>::value) {
      try {
        return T::preset_config(preset);
      } catch (...) {
        return nullptr;
      }
    } else {
      (void)preset;
      return nullptr;
    }
  }
  static eng_model_vtable vtable() noexcept {
    eng_model_vtable v{};
    v.struct_size = sizeof(v);
    v.create = &create;
    v.destroy = &detail::destroy<T>;
    v.info = &info;
    v.declare_params = &declare_params;
    v.forward = &forward;
    v.preset_config = has_preset_config<T>::value ? &preset_config : nullptr;
    v.forward_blocks = ENGINE_SDK_OVERRIDES(T, Model, forward_blocks) ? &forward_blocks : nullptr;
    return v;
  }
};

}  // namespace detail
}  // namespace engine::sdk

// ENGINE_REGISTER_MODEL(Class, "name", "1.2.3", "one-line description", schema_json, capabilities)
#define ENGINE_REGISTER_MODEL(Class, name, version, description, schema_json, caps)                      \
  ENGINE_SDK_DEFINE_NEGOTIATE(::engine::sdk::detail::ModelAdapter<Class>, ENG_KIND_MODEL, name, version, \
                              description, schema_json, caps)
