// One AdamW update of a flat fp32 array, in the order of operations of torch.optim.AdamW's single-tensor
// path (so results agree with torch to fp32 rounding):
//   p   <- p * (1 - lr * wd)                                   decoupled weight decay
//   m   <- lerp(m, g, 1 - b1)        = m + (1 - b1) * (g - m)
//   v   <- v * b2 + (1 - b2) * g * g
//   p   <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// g is the gradient times grad_scale (1, or the clipping factor). t is the 1-based step of this parameter.
//
// The scalar coefficients are computed once per tensor and step (coefficients(): in double, then rounded to
// fp32, as torch does); the CUDA kernel (kernels/adamw_cuda.cu) takes the same fp32 values from here and
// repeats the element loop's operations in the same order, so CPU and GPU agree bit for bit. The element
// loop is specialised on the three loop-invariant choices (scaled gradient, weight decay, lerp form) and
// takes restrict pointers, so that the compiler vectorises it (the plugin is built with -fno-math-errno,
// which lets std::sqrt become the packed square-root instruction); vector and scalar code compute the same
// IEEE-rounded operations, so vectorising changes no bit.
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

// The fp32 constants of one update of one tensor at step t.
struct Coefficients {
  float decay = 1.0f;           // 1 - lr * wd
  float w = 0.1f;               // 1 - b1, the lerp weight (< 0.5 for any sensible beta1)
  float b2 = 0.999f;            // b2
  float one_minus_b2 = 0.001f;  // 1 - b2
  float step_size = 0.0f;       // lr / (1 - b1^t)
  float bc2_sqrt = 1.0f;        // sqrt(1 - b2^t)
  float eps = 1e-8f;
  float grad_scale = 1.0f;
  bool decayed = false;  // wd != 0
  bool scaled = false;   // grad_scale != 1
};

inline Coefficients coefficients(const Hyper& h, int64_t t) {
  Coefficients c;
  c.decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  c.w = static_cast<float>(1.0 - h.beta1);
  c.b2 = static_cast<float>(h.beta2);
  c.one_minus_b2 = static_cast<float>(1.0 - h.beta2);
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(t));
  c.step_size = static_cast<float>(h.lr / bc1);
  c.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  c.eps = static_cast<float>(h.eps);
  c.grad_scale = static_cast<float>(h.grad_scale);
  c.decayed = h.weight_decay != 0.0;
  c.scaled = h.grad_scale != 1.0;
  return c;
}

namespace detail {

template <bool kScaled, bool kDecayed, bool kLerpFromM>
void update_loop(float* __restrict p, float* __restrict m, float* __restrict v, const float* __restrict g,
                 int64_t n, const Coefficients& c) {
  const float decay = c.decay, w = c.w, one_minus_w = 1.0f - c.w, b2 = c.b2, one_minus_b2 = c.one_minus_b2;
  const float step_size = c.step_size, bc2_sqrt = c.bc2_sqrt, eps = c.eps, gs = c.grad_scale;
  for (int64_t i = 0; i < n; ++i) {
    const float gi = kScaled ? g[i] * gs : g[i];
    float pi = p[i];
    if (kDecayed) pi *= decay;
    const float mi = kLerpFromM ? m[i] + w * (gi - m[i]) : gi - (gi - m[i]) * one_minus_w;
    const float vi = v[i] * b2 + one_minus_b2 * gi * gi;
    const float denom = std::sqrt(vi) / bc2_sqrt + eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + -step_size * (mi / denom);
  }
}

template <bool kScaled, bool kDecayed>
void update_loop(float* p, float* m, float* v, const float* g, int64_t n, const Coefficients& c) {
  if (c.w < 0.5f) {
    update_loop<kScaled, kDecayed, true>(p, m, v, g, n, c);
  } else {
    update_loop<kScaled, kDecayed, false>(p, m, v, g, n, c);
  }
}

}  // namespace detail

// p, m, v, g: (n) fp32, distinct arrays (restrict); p, m, v updated in place.
inline void update(float* p, float* m, float* v, const float* g, int64_t n, const Coefficients& c) {
  if (c.scaled) {
    if (c.decayed) {
      detail::update_loop<true, true>(p, m, v, g, n, c);
    } else {
      detail::update_loop<true, false>(p, m, v, g, n, c);
    }
  } else if (c.decayed) {
    detail::update_loop<false, true>(p, m, v, g, n, c);
  } else {
    detail::update_loop<false, false>(p, m, v, g, n, c);
  }
}

inline void update(float* p, float* m, float* v, const float* g, int64_t n, const Hyper& h, int64_t t) {
  update(p, m, v, g, n, coefficients(h, t));
}

}  // namespace adamw
