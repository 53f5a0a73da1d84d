// Cross-entropy over a vocabulary on CUDA, for one chunk of R rows of logits (CPU reference:
// kernels/cpu/cross_entropy.hpp). For a row with logits z (V) and label y != ignore_index:
//   lse = m + log sum_v exp(z_v - m),  m = max_v z_v,   row_loss = lse - z_y,   dz_v = coef (softmax_v - [v
//   == y])
// ignored rows have row_loss = lse = 0 and a zero gradient.
//
// logits, dlogits: (R, V) T row-major (float or bf16), labels: (R) int32, row_loss, lse: (R) float; fp32
// math. Chunk-friendly: a chunk starting at row r0 passes logits + r0 * V, labels + r0, row_loss + r0, lse +
// r0. The fused linear + cross-entropy (cpu::linear_cross_entropy_*) is composed from a cuBLASLt GEMM per
// chunk and these kernels: forward GEMM -> cross_entropy_forward; backward GEMM -> cross_entropy_backward in
// place (dlogits == logits) -> the two gradient GEMMs. The loss scalar is sum_scaled(row_loss).
//
// A label outside [0, V) that is not ignore_index gives row_loss = NaN (so the loss shows it) and no one-hot
// term in the gradient. Nothing here reads device memory on the host or synchronises; all run on `stream`.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::cuda {

// row_loss (R): lse - z_label, 0 for ignored rows; lse (R): 0 for ignored rows.
template <typename T>
void cross_entropy_forward(cudaStream_t stream, const T* logits, const int32_t* labels, int64_t R, int64_t V,
                           int64_t ignore_index, float* row_loss, float* lse);

// dlogits (R, V) = (*dloss * scale) * (softmax(logits) - onehot(label)) on non-ignored rows, 0 on ignored
// rows. dloss is a device scalar (read by the kernel, never on the host). dlogits may alias logits: each
// element is read and then written by the same thread.
template <typename T>
void cross_entropy_backward(cudaStream_t stream, const T* logits, const int32_t* labels, const float* lse,
                            int64_t R, int64_t V, int64_t ignore_index, const float* dloss, float scale,
                            T* dlogits);

// *out = scale * sum(values[0..n)) (accumulate = false) or *out += scale * sum (accumulate = true). The sum
// runs in double in a fixed order (one block, fixed thread partition, fixed tree): bitwise repeatable.
void sum_scaled(cudaStream_t stream, const float* values, int64_t n, float scale, float* out,
                bool accumulate);

}  // namespace engine::cuda
