// engine/cpp/plugin.hpp: what every registration macro shares: version negotiation and the instance holder.
// Plugin authors include the kind's header (model.hpp, optimizer.hpp, ...) and use its ENGINE_REGISTER_*
// macro once per library; they never write engine_plugin_negotiate themselves.
#pragma once

#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "engine/abi/engine.h"
#include "engine/cpp/error.hpp"
#include "engine/cpp/host.hpp"

// The ABI version this plugin is built for. Only tests override it (-DENGINE_SDK_PLUGIN_ABI_VERSION=...), to
// build plugins that a host must refuse.
#ifndef ENGINE_SDK_PLUGIN_ABI_VERSION
#define ENGINE_SDK_PLUGIN_ABI_VERSION ENG_ABI_VERSION
#endif

namespace engine::sdk {

// Everything a registration macro says about the plugin; the strings must have static storage.
struct PluginMeta {
  eng_plugin_kind kind;
  const char* name;
  const char* version;
  const char* description;
  const char* options_schema_json;
  uint64_t capabilities;
};

namespace detail {

inline std::string str(const char* s) { return s != nullptr ? std::string(s) : std::string(); }

// engine_plugin_negotiate's body. The plugin speaks exactly one version (`ours`); it is accepted when it lies
// in the host's [min, max] range. Otherwise ENG_ERR_VERSION with out->abi_version = ours, so the host can
// name both versions. The descriptor is filled in both cases (the host names the plugin in its refusal).
inline eng_status negotiate(const eng_negotiate_request* req, eng_plugin_descriptor* out,
                            const PluginMeta& meta, const void* vtable,
                            uint32_t ours = ENGINE_SDK_PLUGIN_ABI_VERSION) noexcept {
  if (req == nullptr || out == nullptr) return ENG_ERR_INVALID_ARGUMENT;
  if (req->struct_size < offsetof(eng_negotiate_request, host_abi_max) + sizeof(uint32_t)) {
    return ENG_ERR_INVALID_ARGUMENT;
  }
  if (out->struct_size < offsetof(eng_plugin_descriptor, kind) + sizeof(eng_plugin_kind)) {
    return ENG_ERR_INVALID_ARGUMENT;
  }
  const bool ok = req->host_abi_min <= ours && ours <= req->host_abi_max;
  eng_plugin_descriptor d;
  std::memset(static_cast<void*>(&d), 0, sizeof(d));
  d.struct_size = sizeof(d);
  d.abi_version = ours;
  d.kind = meta.kind;
  d.name = meta.name;
  d.version = meta.version;
  d.description = meta.description;
  d.options_schema_json = meta.options_schema_json;
  d.capabilities = meta.capabilities;
  d.vtable = ok ? vtable : nullptr;
  write_struct(out, d);
  return ok ? ENG_OK : ENG_ERR_VERSION;
}

// The object behind an ABI `void* self`: the plugin's C++ instance plus the host table it was created with.
template <typename T>
struct Instance {
  template <typename... Args>
  Instance(const eng_host_api* a, Host& host, Args&&... args)
      : api(a), obj(host, std::forward<Args>(args)...) {}
  const eng_host_api* api;
  T obj;
};

template <typename T>
Instance<T>& self_of(void* self) {
  if (self == nullptr) throw Error("the engine passed a NULL plugin instance", ENG_ERR_INTERNAL);
  return *static_cast<Instance<T>*>(self);
}

// The api to report through for calls that carry no host pointer (destroy, info, ...).
template <typename T>
const eng_host_api* api_of(void* self) noexcept {
  return self != nullptr ? static_cast<Instance<T>*>(self)->api : nullptr;
}

// Creates Instance<T> under the edge guard; *self is NULL on failure.
template <typename T, typename... Args>
eng_status create(const eng_host_api* host, const eng_ctx* ctx, void** self, Args&&... args) noexcept {
  if (self == nullptr) return ENG_ERR_INVALID_ARGUMENT;
  *self = nullptr;
  return guard(host, ctx, [&] {
    Host h(host, ctx);
    *self = new Instance<T>(host, h, std::forward<Args>(args)...);
  });
}

template <typename T>
void destroy(void* self) noexcept {
  delete static_cast<Instance<T>*>(self);
}

// True when Derived overrides the optional virtual `member` of Base: &Derived::member then has type
// R (Derived::*)(...) (or an intermediate class's), not R (Base::*)(...). Used to leave optional table
// entries NULL when a plugin does not implement them.
#define ENGINE_SDK_OVERRIDES(Derived, Base, member) \
  (!std::is_same_v<decltype(&Derived::member), decltype(&Base::member)>)

}  // namespace detail
}  // namespace engine::sdk

// Defines the library's one exported symbol for a plugin class. Adapter is the kind's adapter template
// instantiated with the class; used by the ENGINE_REGISTER_* macros.
#define ENGINE_SDK_DEFINE_NEGOTIATE(Adapter, kind_, name_, version_, description_, schema_, caps_)  \
  extern "C" ENG_PLUGIN_EXPORT eng_status engine_plugin_negotiate(const eng_negotiate_request* req, \
                                                                  eng_plugin_descriptor* out);      \
  extern "C" ENG_PLUGIN_EXPORT eng_status engine_plugin_negotiate(const eng_negotiate_request* req, \
                                                                  eng_plugin_descriptor* out) {     \
    static const auto engine_sdk_vtable = Adapter::vtable();                                        \
    static const ::engine::sdk::PluginMeta engine_sdk_meta{                                         \
        kind_, name_, version_, description_, schema_, static_cast<uint64_t>(caps_)};               \
    return ::engine::sdk::detail::negotiate(req, out, engine_sdk_meta, &engine_sdk_vtable);         \
  }
