// Checks and conversions of the arguments the host and op tables receive; each throws engine::Error with a
// message naming what is wrong (guarded() turns it into a status).
#pragma once

#include <cstdint>

#include "engine/abi/engine.h"
#include "engine/host/host_session.hpp"
#include "engine/runtime/param_store.hpp"
#include "engine/runtime/state_dict.hpp"

namespace engine::host {

// The run's device, refusing a context that asks for another device type.
rt::Device& device_for(const eng_ctx* ctx, HostSession& s);
// (ndim, shape) -> Dims: rank within 0..ENG_MAX_DIMS, no negative dimension.
rt::Dims dims_of(int32_t ndim, const int64_t* shape);
// A dtype the engine defines.
void check_dtype(eng_dtype dtype);
// The parameter behind a handle; `what` names it in the message when the handle is NULL.
rt::Param& param_arg(eng_param p, const char* what);
// The state dictionary behind a handle.
rt::StateDict& state_arg(eng_state st);

}  // namespace engine::host
