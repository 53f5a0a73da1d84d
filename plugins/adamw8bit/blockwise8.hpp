// 8-bit blockwise AdamW as bitsandbytes computes it (bnb.optim.AdamW8bit / Adam8bit with optim_bits=8): the two
// Adam states live as uint8 codes into bitsandbytes' dynamic quantization maps (create_dynamic_map: signed for
// exp_avg, unsigned for exp_avg_sq) with one fp32 absmax per block of 256 elements. Each step, per block:
//   m, v  <- code[c] * absmax                                      dequantize (fp32)
//   g     <- g * grad_scale                                        (only when grad_scale != 1)
//   m     <- m * b1 + g * (1 - b1)
//   v     <- v * b2 + ((1 - b2) * g) * g
//   denom <- sqrt(v) / sqrt(1 - b2^t) + eps
//   p     <- p * (1 - lr * wd)                                     (only when wd > 0)
//   p     <- p + (-lr / (1 - b1^t)) * (m / denom)
//   absmax_m <- max |m| over the block (1 where that is 0), c_m <- nearest code to m / absmax_m; likewise v
// This is bitsandbytes' reference implementation of that kernel, optimizer_update_8bit_blockwise_pytorch in
// bitsandbytes/backends/triton/kernels_optim.py (0.50.2), operation for operation: the dequantize of
// _dequantize_blockwise_pytorch, torch's mul_/add_/addcmul_/addcdiv_ in that order, and
// _quantize_blockwise_pytorch (absmax over the block, zero replaced by 1, true division, argmin of |x - code|
// with ties to the lower code). Parameters with fewer than min_8bit_size elements keep fp32 states (bnb's
// min_8bit_size, default 4096), stepped by the same formula without the re-quantization.
//
// The scalar coefficients are computed once per tensor and step in double and rounded to fp32 (as torch turns
// Python scalars into the op's fp32). The CUDA kernel (kernels/adamw8bit_cuda.cu) takes the same fp32 values
// and repeats the same rounded operations (no FMA contraction, IEEE division and square root), so CPU and GPU
// agree bit for bit: max over a block is exact in any order, the nearest-code search is the same comparisons.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace adamw8bit {

inline constexpr int64_t kBlock = 256;  // bitsandbytes' block size of the 8-bit blockwise optimizers

using Map = std::array<float, 256>;

// torch.linspace(start, end, steps, dtype=float32) on the CPU: step = (end - start) / (steps - 1) in fp32; the
// first half counts up from start, the second half down from end (ATen's RangeFactoriesKernel).
inline std::vector<float> linspace_f32(float start, float end, int64_t steps) {
  std::vector<float> out(static_cast<size_t>(steps));
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int64_t halfway = steps / 2;
  for (int64_t i = 0; i < steps; ++i) {
    out[static_cast<size_t>(i)] = i < halfway ? start + step * static_cast<float>(i)
                                              : end - step * static_cast<float>(steps - i - 1);
  }
  return out;
}

// bitsandbytes.functional.create_dynamic_map(signed, max_exponent_bits=7, total_bits=8), sorted ascending.
inline Map create_dynamic_map(bool is_signed) {
  constexpr int kMaxExponentBits = 7, kTotalBits = 8;
  constexpr int kNonSignBits = kTotalBits - 1;
  std::vector<float> data;
  for (int i = 0; i < kMaxExponentBits; ++i) {
    const int64_t fraction_items = is_signed ? (int64_t{1} << (i + kNonSignBits - kMaxExponentBits)) + 1
                                             : (int64_t{1} << (i + kNonSignBits - kMaxExponentBits + 1)) + 1;
    const std::vector<float> b = linspace_f32(0.1f, 1.0f, fraction_items);
    // (10 ** (-(max_exponent_bits - 1) + i)) * means: a Python float times an fp32 tensor, in fp32
    const float scale = static_cast<float>(std::pow(10.0, static_cast<double>(-(kMaxExponentBits - 1) + i)));
    for (size_t k = 0; k + 1 < b.size(); ++k) {
      const float mean = (b[k] + b[k + 1]) / 2.0f;
      data.push_back(scale * mean);
      if (is_signed) data.push_back(-scale * mean);
    }
  }
  // additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1 = 0 for the 8-bit map
  data.push_back(0.0f);
  data.push_back(1.0f);
  while (data.size() < 256) data.push_back(0.0f);
  std::sort(data.begin(), data.end());
  Map m{};
  std::copy(data.begin(), data.begin() + 256, m.begin());
  return m;
}

inline const Map& signed_map() {
  static const Map m = create_dynamic_map(true);
  return m;
}
inline const Map& unsigned_map() {
  static const Map m = create_dynamic_map(false);
  return m;
}

// The index of the code nearest to x (argmin |x - code[i]|, the lower index on a tie) in a sorted map.
inline uint8_t nearest_code(const float* code, float x) {
  int i = 0;
  for (int step = 128; step >= 1; step >>= 1) {
    if (code[i + step] <= x) i += step;
  }
  if (i < 255 && std::fabs(x - code[i + 1]) < std::fabs(x - code[i])) ++i;
  return static_cast<uint8_t>(i);
}

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
  float b1 = 0.9f;
  float one_minus_b1 = 0.1f;
  float b2 = 0.999f;
  float one_minus_b2 = 0.001f;
  float bc2_sqrt = 1.0f;   // sqrt(1 - b2^t)
  float eps = 1e-8f;
  float decay = 1.0f;      // 1 - lr * wd
  float step_size = 0.0f;  // -lr / (1 - b1^t)
  float grad_scale = 1.0f;
  bool decayed = false;  // wd > 0
  bool scaled = false;   // grad_scale != 1
};

inline Coefficients coefficients(const Hyper& h, int64_t t) {
  Coefficients c;
  c.b1 = static_cast<float>(h.beta1);
  c.one_minus_b1 = static_cast<float>(1.0 - h.beta1);
  c.b2 = static_cast<float>(h.beta2);
  c.one_minus_b2 = static_cast<float>(1.0 - h.beta2);
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(t));
  c.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  c.eps = static_cast<float>(h.eps);
  c.decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  c.step_size = static_cast<float>(-h.lr / bc1);
  c.grad_scale = static_cast<float>(h.grad_scale);
  c.decayed = h.weight_decay > 0.0;
  c.scaled = h.grad_scale != 1.0;
  return c;
}

namespace detail {

// The element update on fp32 states m, v (in place) and the parameter p.
inline void update_elements(float* __restrict p, float* __restrict m, float* __restrict v,
                            const float* __restrict g, int64_t n, const Coefficients& c) {
  const float b1 = c.b1, omb1 = c.one_minus_b1, b2 = c.b2, omb2 = c.one_minus_b2, bc2 = c.bc2_sqrt;
  const float eps = c.eps, decay = c.decay, step_size = c.step_size, gs = c.grad_scale;
  const bool scaled = c.scaled, decayed = c.decayed;
  for (int64_t i = 0; i < n; ++i) {
    const float gi = scaled ? g[i] * gs : g[i];
    const float mi = m[i] * b1 + gi * omb1;
    const float vi = v[i] * b2 + (omb2 * gi) * gi;
    const float denom = std::sqrt(vi) / bc2 + eps;
    float pi = p[i];
    if (decayed) pi = pi * decay;
    p[i] = pi + step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace detail

// One step of one tensor with 8-bit states: p, g (n) fp32; c1, c2 (n) uint8 codes into signed_map() and
// unsigned_map(); a1, a2 (ceil(n / 256)) fp32 absmax per block. All updated in place except g.
inline void update_8bit(float* p, const float* g, uint8_t* c1, uint8_t* c2, float* a1, float* a2, int64_t n,
                        const Coefficients& c) {
  const float* map1 = signed_map().data();
  const float* map2 = unsigned_map().data();
  alignas(64) float m[kBlock];
  alignas(64) float v[kBlock];
  for (int64_t b = 0, begin = 0; begin < n; ++b, begin += kBlock) {
    const int64_t len = std::min(kBlock, n - begin);
    uint8_t* q1 = c1 + begin;
    uint8_t* q2 = c2 + begin;
    const float s1 = a1[b], s2 = a2[b];
    for (int64_t i = 0; i < len; ++i) {
      m[i] = map1[q1[i]] * s1;
      v[i] = map2[q2[i]] * s2;
    }
    detail::update_elements(p + begin, m, v, g + begin, len, c);
    float mx1 = 0.0f, mx2 = 0.0f;
    for (int64_t i = 0; i < len; ++i) {
      mx1 = std::max(mx1, std::fabs(m[i]));
      mx2 = std::max(mx2, std::fabs(v[i]));
    }
    if (mx1 == 0.0f) mx1 = 1.0f;
    if (mx2 == 0.0f) mx2 = 1.0f;
    for (int64_t i = 0; i < len; ++i) {
      q1[i] = nearest_code(map1, m[i] / mx1);
      q2[i] = nearest_code(map2, v[i] / mx2);
    }
    a1[b] = mx1;
    a2[b] = mx2;
  }
}

// One step of one tensor with fp32 states (fewer elements than min_8bit_size): m, v (n) fp32 in place.
inline void update_32bit(float* p, const float* g, float* m, float* v, int64_t n, const Coefficients& c) {
  detail::update_elements(p, m, v, g, n, c);
}

inline int64_t blocks_of(int64_t n) { return (n + kBlock - 1) / kBlock; }

}  // namespace adamw8bit
