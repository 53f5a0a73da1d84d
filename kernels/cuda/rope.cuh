// RoPE on CUDA (CPU reference: kernels/cpu/rope.hpp), Hugging Face rotate_half convention: dimension i pairs
// with i + rotary_dim / 2. For position p and i < rotary_dim / 2, a = float(p) * inv_freq[i] (fp32):
//   y[i] = x[i] cos a - x[i + h] sin a,   y[i + h] = x[i + h] cos a + x[i] sin a,   h = rotary_dim / 2
// dimensions >= rotary_dim pass through. inverse = true rotates by -a (the backward of the forward).
//
// x, y: (B, T, H, D) T row-major (float or bf16), positions: (B, T) int32, inv_freq: (rotary_dim / 2) float
// on the device (cpu::rope_inv_freq computes it on the host for the default, linear and llama3 scalings; the
// caller uploads it once). y may alias x (in place). Runs on `stream`, never synchronises.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::cuda {

template <typename T>
void rope_apply(cudaStream_t stream, const T* x, const int32_t* positions, const float* inv_freq, int64_t B,
                int64_t T_, int64_t H, int64_t D, int64_t rotary_dim, bool inverse, T* y);

}  // namespace engine::cuda
