#include "kernels/cpu/activation.hpp"

#include <vector>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/cpu/vec.hpp"

namespace engine::cpu {

namespace {
constexpr int64_t kGrain = 1 << 13;

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + fast_exp(-x));
}

// The element loops, compiled per SIMD level (fast_exp vectorises; libm exp would not).
template <typename T>
ENGINE_SIMD_CLONES void silu_range(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid(x[i]);
}
template <typename T>
ENGINE_SIMD_CLONES void silu_grad_range(const T* dy, const T* x, T* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T s = sigmoid(x[i]);
    dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
  }
}
template <typename T>
ENGINE_SIMD_CLONES void swiglu_range(const T* g, const T* u, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] * sigmoid(g[i]) * u[i];
}
template <typename T>
ENGINE_SIMD_CLONES void swiglu_grad_range(const T* dy, const T* g, const T* u, T* dg, T* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {  // dg may alias g and du u (in-place backward): read, then write
    const T gi = g[i], ui = u[i], d = dy[i];
    const T s = sigmoid(gi);
    dg[i] = d * ui * s * (T(1) + gi * (T(1) - s));
    du[i] = d * gi * s;
  }
}
}  // namespace

template <typename T>
void silu_forward(ThreadPool& pool, const T* x, T* y, int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) { silu_range(x + i0, y + i0, i1 - i0); });
}

template <typename T>
void silu_backward(ThreadPool& pool, const T* dy, const T* x, T* dx, int64_t n) {
  pool.parallel_for(n, kGrain,
                    [=](int64_t i0, int64_t i1) { silu_grad_range(dy + i0, x + i0, dx + i0, i1 - i0); });
}

template <typename T>
void swiglu_forward(ThreadPool& pool, const T* gate, const T* up, T* y, int64_t n) {
  pool.parallel_for(n, kGrain,
                    [=](int64_t i0, int64_t i1) { swiglu_range(gate + i0, up + i0, y + i0, i1 - i0); });
}

template <typename T>
void swiglu_backward(ThreadPool& pool, const T* dy, const T* gate, const T* up, T* grad_gate, T* grad_up,
                     int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    // Both gradients in one pass; a missing one is written to a chunk-local scratch and dropped.
    std::vector<T> scratch((grad_gate && grad_up) ? 0 : static_cast<size_t>(i1 - i0));
    T* dg = grad_gate ? grad_gate + i0 : scratch.data();
    T* du = grad_up ? grad_up + i0 : scratch.data();
    swiglu_grad_range(dy + i0, gate + i0, up + i0, dg, du, i1 - i0);
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
