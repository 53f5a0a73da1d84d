// Small vector primitives for the row loops of attention and the losses: dot products and axpy.
//
// A float dot product written as one running sum cannot be vectorised without reassociation (-ffast-math),
// which would also make the result depend on the compiler's choices. dot() instead keeps 8 fixed lanes
// (lane l sums elements l, l+8, l+16, ...) and adds the lanes in a fixed tree at the end: the compiler maps
// the lanes onto SIMD registers, and the summation order is the same on every run and every thread.
#pragma once

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

// y += a * x
template <typename T>
inline void axpy(T a, const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace engine::cpu
