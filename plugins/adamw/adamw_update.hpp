// One AdamW update of a flat fp32 array, in the order of operations of torch.optim.AdamW's single-tensor
// path (so results agree with torch to fp32 rounding):
//   p   <- p * (1 - lr * wd)                                   decoupled weight decay
//   m   <- lerp(m, g, 1 - b1)        = m + (1 - b1) * (g - m)
//   v   <- v * b2 + (1 - b2) * g * g
//   p   <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// g is the gradient times grad_scale (1, or the clipping factor). t is the 1-based step of this parameter.
#pragma once

#include <cmath>
#include <cstdint>

namespace adamw {

struct Hyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double grad_scale = 1.0;
};

inline void update(float* p, float* m, float* v, const float* g, int64_t n, const Hyper& h, int64_t t) {
  const float decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  const float w = static_cast<float>(1.0 - h.beta1);  // lerp weight (< 0.5 for any sensible beta1)
  const float b2 = static_cast<float>(h.beta2);
  const float one_minus_b2 = static_cast<float>(1.0 - h.beta2);
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(t));
  const float step_size = static_cast<float>(h.lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float eps = static_cast<float>(h.eps);
  const float gs = static_cast<float>(h.grad_scale);
  const bool scaled = h.grad_scale != 1.0;
  for (int64_t i = 0; i < n; ++i) {
    const float gi = scaled ? g[i] * gs : g[i];
    if (h.weight_decay != 0.0) p[i] *= decay;
    m[i] = w < 0.5f ? m[i] + w * (gi - m[i]) : gi - (gi - m[i]) * (1.0f - w);
    v[i] = v[i] * b2 + one_minus_b2 * gi * gi;
    const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    p[i] += -step_size * (m[i] / denom);
  }
}

}  // namespace adamw
