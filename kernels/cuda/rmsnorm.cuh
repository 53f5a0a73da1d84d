// RMSNorm on CUDA (CPU reference: kernels/cpu/rmsnorm.hpp), and the residual add fused in front of it.
//
//   rstd = 1 / sqrt(mean(x^2) + eps),  y = x * rstd * w                      (over the last dim, C)
//   backward, xhat = x * rstd:  dx = rstd * (dy * w - xhat * mean(dy * w * xhat)),  dw = sum_n dy * xhat
//
// x, y, dy, dx: (N, C) T row-major, w, dw: (C) T, rstd: (N) float; T in {float, __nv_bfloat16}, math in fp32.
// 64 <= C <= 8192 is the range the launch shapes are tuned for; any C >= 1 is computed correctly.
//
// Fused residual add (decoder blocks): add_rmsnorm_forward writes sum_out = T(x + residual) and normalises
// that rounded sum, so it equals rmsnorm_forward applied to sum_out. Its backward therefore needs no kernel
// of its own: with g_sum the gradient arriving at sum_out from the rest of the network (the residual stream),
//   d(sum) = g_sum + rmsnorm_backward(dy, sum_out, w, rstd).dx,   dx = dresidual = d(sum),   dw as plain.
// i.e. the plain backward applied to sum_out, plus the residual gradient passed through unchanged to both x
// and residual.
//
// Aliasing: y may alias x (rmsnorm_forward); sum_out may alias x or residual (add_rmsnorm_forward), y must
// not alias sum_out there. dx may alias dy. All launchers run on `stream` and never synchronise.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::cuda {

// Rows per dw partial in rmsnorm_backward (the same blocks as the CPU reference, so the same sums).
inline constexpr int64_t kRmsnormRowBlock = 32;

// Bytes of float workspace rmsnorm_backward needs for dw: (ceil(N / kRmsnormRowBlock), C) partials.
inline int64_t rmsnorm_backward_workspace_bytes(int64_t N, int64_t C) {
  return (N + kRmsnormRowBlock - 1) / kRmsnormRowBlock * C * static_cast<int64_t>(sizeof(float));
}

// x: (N, C), w: (C) -> y: (N, C), rstd: (N) (rstd may be null).
template <typename T>
void rmsnorm_forward(cudaStream_t stream, const T* x, const T* w, int64_t N, int64_t C, float eps, T* y,
                     float* rstd);

// sum_out = x + residual (rounded to T), then y, rstd = rmsnorm_forward(sum_out). rstd may be null.
template <typename T>
void add_rmsnorm_forward(cudaStream_t stream, const T* x, const T* residual, const T* w, int64_t N, int64_t C,
                         float eps, T* sum_out, T* y, float* rstd);

// dy, x: (N, C), w: (C), rstd: (N) from the forward -> dx: (N, C); dw: (C) overwritten when not null (a
// frozen weight passes null). workspace: rmsnorm_backward_workspace_bytes(N, C) bytes of device memory (only
// used when dw is not null; may be null then). dw is summed over fixed row blocks in block order: bitwise
// repeatable.
template <typename T>
void rmsnorm_backward(cudaStream_t stream, const T* dy, const T* x, const T* w, const float* rstd, int64_t N,
                      int64_t C, T* dx, T* dw, float* workspace);

}  // namespace engine::cuda
