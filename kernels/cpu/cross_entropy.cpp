#include "kernels/cpu/cross_entropy.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "kernels/cpu/vec.hpp"

namespace engine::cpu {

namespace {

int64_t row_grain(int64_t V) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(V, 1)); }

// Row statistics of rows [0, N) of z (N, V): lse and loss per row (0 for ignored rows). The exponentials go
// to exp_out (N, V) when given (the fused loss passes its own logit scratch, z itself), else to a per-thread
// row.
template <typename T>
void rows_lse_loss(ThreadPool& pool, const T* z, T* exp_out, const int32_t* labels, int64_t N, int64_t V,
                   int64_t ignore_index, T* lse, double* row_loss) {
  pool.parallel_for(N, row_grain(V), [=](int64_t n0, int64_t n1) {
    std::vector<T> scratch(exp_out ? 0 : static_cast<size_t>(V));
    for (int64_t n = n0; n < n1; ++n) {
      if (labels[n] == ignore_index) {
        lse[n] = T(0);
        row_loss[n] = 0.0;
        continue;
      }
      const T* zr = z + n * V;  // (V)
      const T target = zr[labels[n]];
      const T m = row_max(zr, V);
      const T s = exp_shifted_sum(zr, m, exp_out ? exp_out + n * V : scratch.data(), V);
      const T l = m + std::log(s);
      lse[n] = l;
      row_loss[n] = static_cast<double>(l - target);
    }
  });
}

// z (N, V) -> coef * (softmax(z) - onehot) in place; ignored rows zeroed.
template <typename T>
void rows_dlogits(ThreadPool& pool, T* z, const int32_t* labels, const T* lse, int64_t N, int64_t V,
                  int64_t ignore_index, T coef) {
  pool.parallel_for(N, row_grain(V), [=](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      T* zr = z + n * V;
      if (labels[n] == ignore_index) {
        std::fill(zr, zr + V, T(0));
        continue;
      }
      exp_shifted_sum(zr, lse[n], zr, V);
      for (int64_t v = 0; v < V; ++v) zr[v] *= coef;
      zr[labels[n]] -= coef;
    }
  });
}

bool all_ignored(const int32_t* labels, int64_t n, int64_t ignore_index) {
  for (int64_t i = 0; i < n; ++i)
    if (labels[i] != ignore_index) return false;
  return true;
}

}  // namespace

int64_t linear_ce_chunk_rows(int64_t V, int64_t elem_bytes) {
  return std::max<int64_t>(1, kLogitBudgetBytes / std::max<int64_t>(1, V * elem_bytes));
}

template <typename T>
double cross_entropy_forward(ThreadPool& pool, const T* logits, const int32_t* labels, int64_t N, int64_t V,
                             int64_t ignore_index, double scale, T* lse) {
  std::vector<double> row_loss(static_cast<size_t>(N));
  rows_lse_loss<T>(pool, logits, nullptr, labels, N, V, ignore_index, lse, row_loss.data());
  double total = 0.0;
  for (double l : row_loss) total += l;
  return scale * total;
}

template <typename T>
void cross_entropy_backward(ThreadPool& pool, const T* logits, const int32_t* labels, const T* lse, int64_t N,
                            int64_t V, int64_t ignore_index, T coef, T* dlogits) {
  if (dlogits != logits) std::memcpy(dlogits, logits, static_cast<size_t>(N * V) * sizeof(T));
  rows_dlogits(pool, dlogits, labels, lse, N, V, ignore_index, coef);
}

template <typename T>
double linear_cross_entropy_forward(ThreadPool& pool, const T* hidden, const T* weight, const int32_t* labels,
                                    int64_t N, int64_t C, int64_t V, int64_t ignore_index, double scale,
                                    int64_t chunk_rows, T* lse) {
  const int64_t R = std::max<int64_t>(1, std::min(chunk_rows, N));
  std::unique_ptr<T[]> z(new T[static_cast<size_t>(R * V)]);  // (R, V) logits of one chunk (not zero-filled)
  std::vector<double> row_loss(static_cast<size_t>(N), 0.0);
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t rows = std::min(R, N - r0);
    if (all_ignored(labels + r0, rows, ignore_index)) {
      std::fill(lse + r0, lse + r0 + rows, T(0));
      continue;
    }
    // z (rows, V) = hidden[r0:r0+rows] (rows, C) @ weight^T (C, V)
    gemm<T>(false, true, rows, V, C, T(1), hidden + r0 * C, C, weight, C, T(0), z.get(), V);
    rows_lse_loss<T>(pool, z.get(), z.get(), labels + r0, rows, V, ignore_index, lse + r0,
                     row_loss.data() + r0);
  }
  double total = 0.0;
  for (double l : row_loss) total += l;
  return scale * total;
}

template <typename T>
void linear_cross_entropy_backward(ThreadPool& pool, const T* hidden, const T* weight, const int32_t* labels,
                                   const T* lse, int64_t N, int64_t C, int64_t V, int64_t ignore_index,
                                   T coef, int64_t chunk_rows, T* grad_hidden, T* grad_weight) {
  const int64_t R = std::max<int64_t>(1, std::min(chunk_rows, N));
  std::unique_ptr<T[]> z(new T[static_cast<size_t>(R * V)]);  // (R, V): logits, then dlogits, of one chunk
  bool weight_written =
      false;  // the first chunk that contributes writes grad_weight (beta 0), later ones add
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t rows = std::min(R, N - r0);
    if (all_ignored(labels + r0, rows, ignore_index)) {
      if (grad_hidden) std::memset(grad_hidden + r0 * C, 0, static_cast<size_t>(rows * C) * sizeof(T));
      continue;
    }
    const T* h = hidden + r0 * C;  // (rows, C)
    gemm<T>(false, true, rows, V, C, T(1), h, C, weight, C, T(0), z.get(), V);
    rows_dlogits(pool, z.get(), labels + r0, lse + r0, rows, V, ignore_index, coef);
    // grad_hidden[chunk] (rows, C) = dlogits (rows, V) @ weight (V, C)
    if (grad_hidden)
      gemm<T>(false, false, rows, C, V, T(1), z.get(), V, weight, C, T(0), grad_hidden + r0 * C, C);
    // grad_weight (V, C) += dlogits^T (V, rows) @ h (rows, C)
    if (grad_weight)
      gemm<T>(true, false, V, C, rows, T(1), z.get(), V, h, C, weight_written ? T(1) : T(0), grad_weight, C);
    weight_written = true;
  }
  if (grad_weight && !weight_written) std::memset(grad_weight, 0, static_cast<size_t>(V * C) * sizeof(T));
}

#define ENGINE_INSTANTIATE(T)                                                                                \
  template double cross_entropy_forward<T>(ThreadPool&, const T*, const int32_t*, int64_t, int64_t, int64_t, \
                                           double, T*);                                                      \
  template void cross_entropy_backward<T>(ThreadPool&, const T*, const int32_t*, const T*, int64_t, int64_t, \
                                          int64_t, T, T*);                                                   \
  template double linear_cross_entropy_forward<T>(ThreadPool&, const T*, const T*, const int32_t*, int64_t,  \
                                                  int64_t, int64_t, int64_t, double, int64_t, T*);           \
  template void linear_cross_entropy_backward<T>(ThreadPool&, const T*, const T*, const int32_t*, const T*,  \
                                                 int64_t, int64_t, int64_t, int64_t, T, int64_t, T*, T*);
ENGINE_INSTANTIATE(float)
ENGINE_INSTANTIATE(double)
#undef ENGINE_INSTANTIATE

}  // namespace engine::cpu
