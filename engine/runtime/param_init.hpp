// The initial value of a parameter that no checkpoint provides, as its declaration asks (eng_init_kind):
// zeros, ones, normal N(0, a^2) by Box-Muller, uniform U(-a, a), or kaiming_uniform as torch.nn.init does.
// The values are drawn from a generator seeded by (store seed, parameter name), so they do not depend on
// the order in which parameters are declared.
#pragma once

#include <cstdint>

#include "engine/runtime/param_store.hpp"

namespace engine::rt {

// decl's init (shape, kind, init_arg) -> a new tensor of `dtype` on `device`.
Tensor initial_value(const ParamDecl& decl, uint64_t seed, DType dtype, Device& device);

}  // namespace engine::rt
