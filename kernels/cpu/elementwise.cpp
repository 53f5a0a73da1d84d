#include "kernels/cpu/elementwise.hpp"

#include "kernels/cpu/thread_pool.hpp"

namespace engine::cpu {

namespace {
constexpr int64_t kGrain =
    1 << 14;  // elements per chunk at least: below this threads cost more than they save
}

template <typename T>
void add_broadcast(ThreadPool& pool, const T* a, const T* b, T* out, int64_t outer, int64_t inner) {
  // One chunk = a range of whole rows, so the inner loop is a plain vectorisable a[j] + b[j].
  pool.parallel_for(outer, (kGrain + inner - 1) / (inner ? inner : 1), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* ar = a + r * inner;
      T* o = out + r * inner;
      for (int64_t j = 0; j < inner; ++j) o[j] = ar[j] + b[j];
    }
  });
}

template <typename T>
void mul_broadcast(ThreadPool& pool, const T* a, const T* b, T* out, int64_t outer, int64_t inner) {
  pool.parallel_for(outer, (kGrain + inner - 1) / (inner ? inner : 1), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* ar = a + r * inner;
      T* o = out + r * inner;
      for (int64_t j = 0; j < inner; ++j) o[j] = ar[j] * b[j];
    }
  });
}

template <typename T>
void scale(ThreadPool& pool, const T* x, T s, T* out, int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) out[i] = s * x[i];
  });
}

template <typename T>
void axpby(ThreadPool& pool, T* dst, T a, const T* src, T b, int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = a * dst[i] + b * src[i];
  });
}

template <typename T>
void fill(ThreadPool& pool, T* dst, T value, int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = value;
  });
}

#define ENGINE_INSTANTIATE(T)                                                            \
  template void add_broadcast<T>(ThreadPool&, const T*, const T*, T*, int64_t, int64_t); \
  template void mul_broadcast<T>(ThreadPool&, const T*, const T*, T*, int64_t, int64_t); \
  template void scale<T>(ThreadPool&, const T*, T, T*, int64_t);                         \
  template void axpby<T>(ThreadPool&, T*, T, const T*, T, int64_t);                      \
  template void fill<T>(ThreadPool&, T*, T, int64_t);
ENGINE_INSTANTIATE(float)
ENGINE_INSTANTIATE(double)
#undef ENGINE_INSTANTIATE

}  // namespace engine::cpu
