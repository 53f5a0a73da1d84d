#include "kernels/cpu/rmsnorm.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/cpu/vec.hpp"

namespace engine::cpu {

namespace {
constexpr int64_t kRowBlock = 32;
int64_t row_grain(int64_t C) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(C, 1)); }
}  // namespace

template <typename T>
void rmsnorm_forward(ThreadPool& pool, const T* x, const T* w, int64_t N, int64_t C, double eps, T* y,
                     T* rstd) {
  pool.parallel_for(N, row_grain(C), [=](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* xr = x + n * C;  // (C)
      T* yr = y + n * C;
      const T ss = dot(xr, xr, C);
      const T r = static_cast<T>(1.0 / std::sqrt(static_cast<double>(ss) / static_cast<double>(C) + eps));
      for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * r * w[c];
      if (rstd) rstd[n] = r;
    }
  });
}

template <typename T>
void rmsnorm_backward(ThreadPool& pool, const T* dy, const T* x, const T* w, const T* rstd, int64_t N,
                      int64_t C, T* grad_x, T* grad_w) {
  const int64_t blocks = (N + kRowBlock - 1) / kRowBlock;
  // partial: (blocks, C) sums of dy * xhat, one row per block of kRowBlock rows
  std::vector<T> partial(grad_w ? static_cast<size_t>(blocks * C) : 0);
  T* part = partial.data();
  pool.parallel_for(blocks, 1, [=](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* pw = grad_w ? part + b * C : nullptr;
      if (pw) std::fill(pw, pw + C, T(0));
      for (int64_t n = b * kRowBlock; n < std::min(N, (b + 1) * kRowBlock); ++n) {
        const T* xr = x + n * C;
        const T* dyr = dy + n * C;
        const T r = rstd[n];
        T gx = 0;  // sum_c dy * w * x
        for (int64_t c = 0; c < C; ++c) gx += dyr[c] * w[c] * xr[c];
        const T m = gx * r / static_cast<T>(C);
        T* dxr = grad_x + n * C;
        for (int64_t c = 0; c < C; ++c) dxr[c] = r * (dyr[c] * w[c] - xr[c] * r * m);
        if (pw)
          for (int64_t c = 0; c < C; ++c) pw[c] += dyr[c] * xr[c] * r;
      }
    }
  });
  if (grad_w) {
    std::fill(grad_w, grad_w + C, T(0));
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t c = 0; c < C; ++c) grad_w[c] += part[b * C + c];
  }
}

template void rmsnorm_forward<float>(ThreadPool&, const float*, const float*, int64_t, int64_t, double,
                                     float*, float*);
template void rmsnorm_forward<double>(ThreadPool&, const double*, const double*, int64_t, int64_t, double,
                                      double*, double*);
template void rmsnorm_backward<float>(ThreadPool&, const float*, const float*, const float*, const float*,
                                      int64_t, int64_t, float*, float*);
template void rmsnorm_backward<double>(ThreadPool&, const double*, const double*, const double*,
                                       const double*, int64_t, int64_t, double*, double*);

}  // namespace engine::cpu
