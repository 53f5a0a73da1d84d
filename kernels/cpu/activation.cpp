#include "kernels/cpu/activation.hpp"

#include <cmath>

#include "kernels/cpu/thread_pool.hpp"

namespace engine::cpu {

namespace {
constexpr int64_t kGrain = 1 << 13;
template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
}  // namespace

template <typename T>
void silu_forward(ThreadPool& pool, const T* x, T* y, int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = x[i] * sigmoid(x[i]);
  });
}

template <typename T>
void silu_backward(ThreadPool& pool, const T* dy, const T* x, T* dx, int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T s = sigmoid(x[i]);
      dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
    }
  });
}

template <typename T>
void swiglu_forward(ThreadPool& pool, const T* gate, const T* up, T* y, int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = gate[i] * sigmoid(gate[i]) * up[i];
  });
}

template <typename T>
void swiglu_backward(ThreadPool& pool, const T* dy, const T* gate, const T* up, T* grad_gate, T* grad_up,
                     int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T g = gate[i];
      const T s = sigmoid(g);
      if (grad_gate) grad_gate[i] = dy[i] * up[i] * s * (T(1) + g * (T(1) - s));
      if (grad_up) grad_up[i] = dy[i] * g * s;
    }
  });
}

#define ENGINE_INSTANTIATE(T)                                                    \
  template void silu_forward<T>(ThreadPool&, const T*, T*, int64_t);             \
  template void silu_backward<T>(ThreadPool&, const T*, const T*, T*, int64_t);  \
  template void swiglu_forward<T>(ThreadPool&, const T*, const T*, T*, int64_t); \
  template void swiglu_backward<T>(ThreadPool&, const T*, const T*, const T*, T*, T*, int64_t);
ENGINE_INSTANTIATE(float)
ENGINE_INSTANTIATE(double)
#undef ENGINE_INSTANTIATE

}  // namespace engine::cpu
