// The eng_param_info of a parameter: what host->param_info and a quantizer's takes() see of it.
#pragma once

#include "engine/abi/engine.h"
#include "engine/runtime/param_store.hpp"

namespace engine::host {

// The description of `p` (its name points into the store, valid while the store lives).
eng_param_info param_info(const rt::Param& p);

}  // namespace engine::host
