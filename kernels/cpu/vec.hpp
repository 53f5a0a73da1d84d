// Small vector primitives for the row loops of attention and the losses: dot products and axpy.
//
// A float dot product written as one running sum cannot be vectorised without reassociation (-ffast-math),
// which would also make the result depend on the compiler's choices. dot() instead keeps 8 fixed lanes
// (lane l sums elements l, l+8, l+16, ...) and adds the lanes in a fixed tree at the end: the compiler maps
// the lanes onto SIMD registers, and the summation order is the same on every run and every thread.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

// ENGINE_SIMD_CLONES on a row kernel: GCC compiles it for AVX-512, AVX2 and baseline x86-64 and picks one at
// load time (ifunc), so the build stays portable while the hot loops use the machine's vector width. Loops
// without reductions (and dot() below, whose lanes are explicit) give the same bits on every variant.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ENGINE_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ENGINE_SIMD_CLONES
#endif

namespace engine::cpu {

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lane[l] += a[i + l] * b[i + l];
  for (int l = 0; i < n; ++i, ++l) lane[l] += a[i] * b[i];
  return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

// exp for the softmax-style loops. double: std::exp. float: a branch-free version the compiler vectorises
// (scalar libm expf is ~20 cycles and was a visible share of attention and the loss): round x / ln 2 to n
// with the 1.5 * 2^23 trick, reduce r = x - n ln 2 in two parts, Cephes' degree-6 polynomial for exp(r) on
// [-ln2/2, ln2/2], scale by 2^n through the exponent bits. Within 2 ulp of expf for x in [-87, 88]; inputs
// below -87 give exp(-87) ~ 1.6e-38 instead of a denormal or 0 (only ever added to sums >= 1 here).
template <typename T>
inline T fast_exp(T x) {
  if constexpr (std::is_same_v<T, double>) {
    return std::exp(x);
  } else {
    x = std::min(std::max(x, -87.0f), 88.0f);
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    return p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  }
}

// Row helpers compiled with ENGINE_SIMD_CLONES (vec.cpp), for float and double.
// max of x[0..n) (n >= 1), in 8 fixed lanes.
template <typename T>
T row_max(const T* x, int64_t n);
// y[j] = fast_exp(x[j] - shift) for j < n (y may be x); returns the sum of the y[j] in 8 fixed lanes.
template <typename T>
T exp_shifted_sum(const T* x, T shift, T* y, int64_t n);

// y += a * x
template <typename T>
inline void axpy(T a, const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace engine::cpu
