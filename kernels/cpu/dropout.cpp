#include "kernels/cpu/dropout.hpp"

#include "engine/core/splitmix64.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace engine::cpu {

bool dropout_keep(uint64_t seed, uint64_t index, double p) {
  const uint64_t r = splitmix64(seed ^ splitmix64(index));
  const double u = static_cast<double>(r >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
  return u >= p;
}

template <typename T>
void dropout_apply(ThreadPool& pool, const T* x, T* y, int64_t n, double p, uint64_t seed) {
  const T keep_scale = static_cast<T>(1.0 / (1.0 - p));
  pool.parallel_for(n, 1 << 13, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      y[i] = dropout_keep(seed, static_cast<uint64_t>(i), p) ? x[i] * keep_scale : T(0);
  });
}

template void dropout_apply<float>(ThreadPool&, const float*, float*, int64_t, double, uint64_t);
template void dropout_apply<double>(ThreadPool&, const double*, double*, int64_t, double, uint64_t);

}  // namespace engine::cpu
