#include "kernels/cpu/embedding.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/cpu/cast.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace engine::cpu {

int64_t check_ids(const int32_t* ids, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= vocab) return i;
  return -1;
}

template <typename T>
void embedding_forward(ThreadPool& pool, const T* table, const int32_t* ids, int64_t N, int64_t C, T* out) {
  pool.parallel_for(N, std::max<int64_t>(1, 4096 / std::max<int64_t>(C, 1)), [=](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      std::memcpy(out + n * C, table + static_cast<int64_t>(ids[n]) * C, static_cast<size_t>(C) * sizeof(T));
  });
}

template <typename T>
void embedding_backward(ThreadPool& pool, const T* grad_out, const int32_t* ids, int64_t N, int64_t V,
                        int64_t C, T* grad_table) {
  // Zero the whole (V, C) gradient in contiguous row ranges, then scatter-add by column ranges.
  pool.parallel_for(V, 256, [=](int64_t v0, int64_t v1) {
    std::memset(grad_table + v0 * C, 0, static_cast<size_t>((v1 - v0) * C) * sizeof(T));
  });
  pool.parallel_for(C, 64, [=](int64_t c0, int64_t c1) {
    for (int64_t n = 0; n < N; ++n) {
      T* dst = grad_table + static_cast<int64_t>(ids[n]) * C;
      const T* src = grad_out + n * C;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  });
}

template void embedding_forward<float>(ThreadPool&, const float*, const int32_t*, int64_t, int64_t, float*);
// bf16 / f16 tables (frozen embeddings kept in storage precision): rows are gathered as stored, and only the
// (N, C) result is converted, not the whole table.
template void embedding_forward<Bf16>(ThreadPool&, const Bf16*, const int32_t*, int64_t, int64_t, Bf16*);
template void embedding_forward<F16>(ThreadPool&, const F16*, const int32_t*, int64_t, int64_t, F16*);
template void embedding_forward<double>(ThreadPool&, const double*, const int32_t*, int64_t, int64_t,
                                        double*);
template void embedding_backward<float>(ThreadPool&, const float*, const int32_t*, int64_t, int64_t, int64_t,
                                        float*);
template void embedding_backward<double>(ThreadPool&, const double*, const int32_t*, int64_t, int64_t,
                                         int64_t, double*);

}  // namespace engine::cpu
