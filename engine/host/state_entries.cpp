// The host table's state-dictionary entries: the engine's dictionaries (optimizer and strategy state at save
// and load) and the plugin-owned ones from state_create or safetensors_read.
#include <spdlog/spdlog.h>

#include <memory>

#include "engine/core/error.hpp"
#include "engine/host/entry_args.hpp"
#include "engine/host/entry_guard.hpp"
#include "engine/host/host_api.hpp"
#include "engine/host/host_entries.hpp"

namespace engine::host {

eng_status h_state_put(const eng_ctx* ctx, eng_state st, const char* key, eng_tensor t) {
  return guarded(ctx, "state_put", [&] {
    if (key == nullptr) fail("the key is NULL");
    state_arg(st).put(key, tensor_of(t, "t"));
  });
}

eng_status h_state_get(const eng_ctx* ctx, eng_state st, const char* key, eng_tensor* out) {
  return guarded(ctx, "state_get", [&] {
    if (out == nullptr || key == nullptr) fail("key and out must not be NULL");
    *out = nullptr;
    *out = make_handle(state_arg(st).get(key));
  });
}

eng_status h_state_create(const eng_ctx* ctx, eng_state* out) {
  return guarded(ctx, "state_create", [&] {
    if (out == nullptr) fail("the output pointer is NULL");
    *out = nullptr;
    session_of(ctx);
    auto st = std::make_unique<rt::StateDict>();
    st->set_plugin_owned();
    *out = state_handle(*st.release());
  });
}

void h_state_destroy(eng_state st) {
  if (st == nullptr) return;
  auto* dict = reinterpret_cast<rt::StateDict*>(st);
  if (!dict->plugin_owned()) {  // the engine's own (checkpoint save/load): freeing it would be a double free
    try {
      spdlog::error(
          "state_destroy: a plugin tried to free a state dictionary the engine passed in; only states from "
          "state_create or safetensors_read are the plugin's to destroy (ignored)");
    } catch (...) {
    }
    return;
  }
  delete dict;
}

int64_t h_state_size(eng_state st) {
  return st != nullptr ? static_cast<int64_t>(reinterpret_cast<rt::StateDict*>(st)->size()) : -1;
}

const char* h_state_key_at(eng_state st, int64_t i) {
  if (st == nullptr || i < 0) return nullptr;
  try {
    return reinterpret_cast<rt::StateDict*>(st)->key_at(static_cast<size_t>(i));
  } catch (...) {  // building the key index ran out of memory
    return nullptr;
  }
}

}  // namespace engine::host
