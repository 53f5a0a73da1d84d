// The global L2 norm of the accumulated gradients of every trainable parameter, and the clipping factor
// derived from it (torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied when < 1).
// Parameters are visited in declaration order and squares summed in double, so the norm is reproducible.
#pragma once

#include <functional>

#include "engine/runtime/param_store.hpp"

namespace engine::train {

// NaN or Inf when a gradient holds one. Tied parameters count once (their root).
double global_grad_norm(const rt::ParamStore& params);
// The sum of squares behind it (a sharded strategy sums it over ranks first).
double grad_sum_squares(const rt::ParamStore& params);
// The same over the trainable parameters for which `include` is true.
double grad_sum_squares(const rt::ParamStore& params, const std::function<bool(const rt::Param&)>& include);

// The factor gradients are multiplied by: 1 without clipping (max_norm <= 0) or when norm <= max_norm.
double clip_coefficient(double norm, double max_norm);

}  // namespace engine::train
