// Elementwise kernels: broadcast add / mul, scale, axpby, fill, and the in-place updates optimizers use.
//
// Broadcasting is the one form the ops need: a (outer, inner) combined with b (inner), b repeated over the
// outer rows (b == a's trailing dims). outer == 1 is the plain same-shape case. Contiguous row-major buffers.
// Work is split over elements in fixed contiguous ranges by the pool; no reductions, so results do not depend
// on the number of threads.
#pragma once

#include <cstdint>

namespace engine::cpu {

class ThreadPool;

// out[i, j] = a[i, j] + b[j]        a, out: (outer, inner), b: (inner)
template <typename T>
void add_broadcast(ThreadPool& pool, const T* a, const T* b, T* out, int64_t outer, int64_t inner);
// out[i, j] = a[i, j] * b[j]
template <typename T>
void mul_broadcast(ThreadPool& pool, const T* a, const T* b, T* out, int64_t outer, int64_t inner);
// out = s * x          (n)
template <typename T>
void scale(ThreadPool& pool, const T* x, T s, T* out, int64_t n);
// dst = a * dst + b * src   (n)
template <typename T>
void axpby(ThreadPool& pool, T* dst, T a, const T* src, T b, int64_t n);
// dst = value   (n)
template <typename T>
void fill(ThreadPool& pool, T* dst, T value, int64_t n);

}  // namespace engine::cpu
