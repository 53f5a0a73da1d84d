// SiLU and SwiGLU on the GPU, forward and backward. Mirrors kernels/cpu/activation.hpp.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::cuda {

// All buffers: n contiguous elements of T (float or __nv_bfloat16); fp32 math.
// y = x * sigmoid(x)
template <typename T>
void silu_forward(cudaStream_t stream, const T* x, T* y, int64_t n);
// dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x)
template <typename T>
void silu_backward(cudaStream_t stream, const T* dy, const T* x, T* dx, int64_t n);
// y = silu(gate) * up
template <typename T>
void swiglu_forward(cudaStream_t stream, const T* gate, const T* up, T* y, int64_t n);
// grad_gate = dy * up * silu'(gate), grad_up = dy * silu(gate); either may be null when not needed.
// grad_gate may be gate and grad_up may be up (in place).
template <typename T>
void swiglu_backward(cudaStream_t stream, const T* dy, const T* gate, const T* up, T* grad_gate, T* grad_up,
                     int64_t n);

}  // namespace engine::cuda
