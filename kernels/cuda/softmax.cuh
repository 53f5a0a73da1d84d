// Softmax over the last dim on CUDA (CPU reference: kernels/cpu/softmax.hpp):
//   y = exp(x - max) / sum exp(x - max),   backward: dx = y * (dy - sum(dy * y))
//
// x, y, dy, dx: (N, C) T row-major (float or bf16), math in fp32; C up to the vocabulary (~152k). y may alias
// x, dx may alias dy. A row whose entries are all -inf gives NaN, as the CPU reference does. Runs on
// `stream`, never synchronises; rows are reduced in a fixed order (bitwise repeatable).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::cuda {

template <typename T>
void softmax_forward(cudaStream_t stream, const T* x, T* y, int64_t N, int64_t C);
template <typename T>
void softmax_backward(cudaStream_t stream, const T* dy, const T* y, T* dx, int64_t N, int64_t C);

}  // namespace engine::cuda
