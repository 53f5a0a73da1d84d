// RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps), over the last dim (Llama / Qwen2 convention:
// the statistics in the compute type, the weight applied after normalisation).
//
// x, y: (N, C) row-major, w: (C), rstd: (N) saved for backward.
// Backward, with xhat = x * rstd and g = dy * w:
//   dx = rstd * (g - xhat * mean(g * xhat))
//   dw = sum_n dy[n] * xhat[n]
// Rows are independent (split over rows). dw is a reduction over rows: it is formed in fixed blocks of
// kRowBlock rows, one (C) partial per block, and the partials are added in block order, so the result is the
// same for any number of threads. The row statistics accumulate in the compute type, as Hugging Face does in
// fp32.
#pragma once

#include <cstdint>

namespace engine::cpu {

class ThreadPool;

template <typename T>
void rmsnorm_forward(ThreadPool& pool, const T* x, const T* w, int64_t N, int64_t C, double eps, T* y,
                     T* rstd);
// grad_w may be null (weight frozen).
template <typename T>
void rmsnorm_backward(ThreadPool& pool, const T* dy, const T* x, const T* w, const T* rstd, int64_t N,
                      int64_t C, T* grad_x, T* grad_w);

}  // namespace engine::cpu
