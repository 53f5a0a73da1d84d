// SiLU and SwiGLU.
//
//   silu(x) = x * sigmoid(x),           silu'(x) = s * (1 + x * (1 - s)),  s = sigmoid(x)
//   swiglu(g, u) = silu(g) * u,         d/dg = dy * u * silu'(g),  d/du = dy * silu(g)
//
// Contiguous buffers of n elements, split into fixed ranges; float uses fast_exp (vec.hpp), vectorised
// through SIMD clones. The backward recomputes sigmoid from the saved inputs (one exp per element) instead of
// saving it: activations dominate memory, exp is cheap.
#pragma once

#include <cstdint>

namespace engine::cpu {

class ThreadPool;

template <typename T>
void silu_forward(ThreadPool& pool, const T* x, T* y, int64_t n);
template <typename T>
void silu_backward(ThreadPool& pool, const T* dy, const T* x, T* dx, int64_t n);
template <typename T>
void swiglu_forward(ThreadPool& pool, const T* gate, const T* up, T* y, int64_t n);
// grad_gate / grad_up may be null when not needed; grad_gate may be gate and grad_up up (in place).
template <typename T>
void swiglu_backward(ThreadPool& pool, const T* dy, const T* gate, const T* up, T* grad_gate, T* grad_up,
                     int64_t n);

}  // namespace engine::cpu
