#include "kernels/cpu/softmax.hpp"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/cpu/vec.hpp"

namespace engine::cpu {

namespace {
int64_t row_grain(int64_t C) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(C, 1)); }
}  // namespace

template <typename T>
void softmax_forward(ThreadPool& pool, const T* x, T* y, int64_t N, int64_t C) {
  pool.parallel_for(N, row_grain(C), [=](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* xr = x + n * C;
      T* yr = y + n * C;
      const T s = exp_shifted_sum(xr, row_max(xr, C), yr, C);
      const T inv = T(1) / s;
      for (int64_t c = 0; c < C; ++c) yr[c] *= inv;
    }
  });
}

template <typename T>
void softmax_backward(ThreadPool& pool, const T* dy, const T* y, T* dx, int64_t N, int64_t C) {
  pool.parallel_for(N, row_grain(C), [=](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* dyr = dy + n * C;
      const T* yr = y + n * C;
      T dot = 0;
      for (int64_t c = 0; c < C; ++c) dot += dyr[c] * yr[c];
      T* dxr = dx + n * C;
      for (int64_t c = 0; c < C; ++c) dxr[c] = yr[c] * (dyr[c] - dot);
    }
  });
}

template void softmax_forward<float>(ThreadPool&, const float*, float*, int64_t, int64_t);
template void softmax_forward<double>(ThreadPool&, const double*, double*, int64_t, int64_t);
template void softmax_backward<float>(ThreadPool&, const float*, const float*, float*, int64_t, int64_t);
template void softmax_backward<double>(ThreadPool&, const double*, const double*, double*, int64_t, int64_t);

}  // namespace engine::cpu
