#include "kernels/cpu/reduce.hpp"

#include <algorithm>
#include <vector>

#include "kernels/cpu/thread_pool.hpp"

namespace engine::cpu {

namespace {
constexpr int64_t kSumBlock = 1 << 12;
// Columns per chunk of a column sum: at least a cache line's worth, and enough rows*cols per chunk to be
// worth a thread.
int64_t column_grain(int64_t rows) {
  return std::max<int64_t>(16, (int64_t{1} << 14) / std::max<int64_t>(rows, 1));
}
}  // namespace

template <typename T>
double sum_all(ThreadPool& pool, const T* x, int64_t n) {
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  pool.parallel_for(blocks, 4, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * kSumBlock, i1 = std::min(n, i0 + kSumBlock);
      double s = 0.0;
      for (int64_t i = i0; i < i1; ++i) s += static_cast<double>(x[i]);
      partial[static_cast<size_t>(b)] = s;
    }
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

template <typename T>
void sum_rows(ThreadPool& pool, const T* x, int64_t rows, int64_t cols, T* out) {
  pool.parallel_for(cols, column_grain(rows), [=](int64_t c0, int64_t c1) {
    for (int64_t j = c0; j < c1; ++j) out[j] = T(0);
    for (int64_t i = 0; i < rows; ++i) {
      const T* xr = x + i * cols;
      for (int64_t j = c0; j < c1; ++j) out[j] += xr[j];
    }
  });
}

template <typename T>
void sum_rows_product(ThreadPool& pool, const T* x, const T* y, int64_t rows, int64_t cols, T* out) {
  pool.parallel_for(cols, column_grain(rows), [=](int64_t c0, int64_t c1) {
    for (int64_t j = c0; j < c1; ++j) out[j] = T(0);
    for (int64_t i = 0; i < rows; ++i) {
      const T* xr = x + i * cols;
      const T* yr = y + i * cols;
      for (int64_t j = c0; j < c1; ++j) out[j] += xr[j] * yr[j];
    }
  });
}

#define ENGINE_INSTANTIATE(T)                                             \
  template double sum_all<T>(ThreadPool&, const T*, int64_t);             \
  template void sum_rows<T>(ThreadPool&, const T*, int64_t, int64_t, T*); \
  template void sum_rows_product<T>(ThreadPool&, const T*, const T*, int64_t, int64_t, T*);
ENGINE_INSTANTIATE(float)
ENGINE_INSTANTIATE(double)
#undef ENGINE_INSTANTIATE

}  // namespace engine::cpu
