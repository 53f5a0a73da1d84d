// The declared initial value of a parameter (ParamDecl::init, init_arg), element by element.
//
// Every parameter draws from its own stream, Rng(Rng::derive(store seed, parameter name)), and element k of
// the value is a function of draw k (and, for ENG_INIT_NORMAL, of the other draw of its Box-Muller pair
// {2j, 2j + 1}). The generator is splitmix64, a counter, so any range [offset, offset + n) is produced on
// its own without the elements before it: ParamStore::materialize fills whole tensors with it, and
// `engine init-model` streams a 7B model to disk range by range, on several threads, with the same bytes.
//
//   ENG_INIT_ZEROS, ENG_INIT_ONES      0, 1
//   ENG_INIT_NORMAL (a)                N(0, a^2): u1 = 1 - draw(2j), u2 = draw(2j+1) in [0, 1),
//                                      r = sqrt(-2 ln u1), x[2j] = a r cos(2 pi u2), x[2j+1] = a r sin(2 pi
//                                      u2)
//   ENG_INIT_UNIFORM (a)               U(-a, a): a (2 draw(k) - 1)
//   ENG_INIT_KAIMING_UNIFORM (a)       U(-b, b), b = sqrt(2 / (1 + a)) sqrt(3 / fan_in) (torch's
//                                      kaiming_uniform_ with negative slope sqrt(a); a = 5 is nn.Linear's)
#pragma once

#include <cstdint>
#include <span>

#include "engine/runtime/param_store.hpp"

namespace engine::rt {

// out[i] = element (offset + i) of decl's initial value in row-major order, in double precision (the
// store converts to the storage dtype). Throws engine::Error for an unknown init kind or a range past the
// end.
void initial_values(const ParamDecl& decl, uint64_t store_seed, int64_t offset, std::span<double> out);

// decl's whole initial value as a new tensor of `dtype` on `device` (what ParamStore::materialize stores).
Tensor initial_value(const ParamDecl& decl, uint64_t store_seed, DType dtype, Device& device);

}  // namespace engine::rt
