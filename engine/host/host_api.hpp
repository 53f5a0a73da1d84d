// The host service table and op table handed to plugins (eng_host_api, eng_op_table in engine/abi/engine.h).
//
// host_api.cpp assembles the host table from the entries listed in host_entries.hpp (one file per concern:
// session_, tensor_, param_, state_, safetensors_ and collective_entries.cpp); op_table.cpp holds the op
// table. Every entry finds its HostSession through ctx->host_data, catches every exception and returns a
// status with the message stored in the session's error slot (host->get_error, entry_guard.hpp); nothing
// throws across the ABI. Handles: eng_tensor = refcounted eng_tensor_s (tensor_handle.hpp), eng_param =
// rt::Param*, eng_kv_cache = rt::KvCache*, eng_state = rt::StateDict*. Ops record on the session's tape when
// ctx->grad_enabled is set.
#pragma once

#include "engine/abi/engine.h"
#include "engine/runtime/kv_cache.hpp"
#include "engine/runtime/param_store.hpp"
#include "engine/runtime/state_dict.hpp"

namespace engine::host {

// The tables (static, immutable, valid for the life of the process).
const eng_host_api* host_api();
const eng_op_table* op_table();

// Handle conversions for the session layer.
inline eng_param param_handle(rt::Param& p) { return reinterpret_cast<eng_param>(&p); }
inline rt::Param& param_of(eng_param p) { return *reinterpret_cast<rt::Param*>(p); }
inline eng_kv_cache kv_cache_handle(rt::KvCache& c) { return reinterpret_cast<eng_kv_cache>(&c); }
inline eng_state state_handle(rt::StateDict& s) { return reinterpret_cast<eng_state>(&s); }

}  // namespace engine::host
