#include "kernels/cpu/pointwise.hpp"

#include <algorithm>

#include "kernels/cpu/thread_pool.hpp"

namespace engine::cpu {

namespace {

constexpr int64_t kGrain = 1 << 14;  // elements per chunk at least: below this threads cost more than they save

// Calls f(i, off) for output elements i in [i0, i1) of bc, off[k] the element offset of operand k < K.
template <int K, typename F>
void strided_range(const Broadcast& bc, int64_t i0, int64_t i1, F&& f) {
  const int nd = bc.ndim;
  int64_t off[K] = {};
  if (nd == 0) {
    if (i0 < i1) f(int64_t{0}, off);
    return;
  }
  int64_t idx[kBroadcastMaxDims] = {};
  int64_t r = i0;
  for (int d = nd - 1; d >= 0; --d) {
    idx[d] = r % bc.shape[d];
    r /= bc.shape[d];
    for (int k = 0; k < K; ++k) off[k] += idx[d] * bc.stride[k][d];
  }
  const int64_t inner = bc.shape[nd - 1];
  int64_t inner_stride[K];
  for (int k = 0; k < K; ++k) inner_stride[k] = bc.stride[k][nd - 1];
  for (int64_t i = i0; i < i1;) {
    const int64_t run = std::min(inner - idx[nd - 1], i1 - i);
    int64_t o[K];
    for (int k = 0; k < K; ++k) o[k] = off[k];
    for (int64_t j = 0; j < run; ++j) {
      f(i + j, o);
      for (int k = 0; k < K; ++k) o[k] += inner_stride[k];
    }
    i += run;
    idx[nd - 1] += run;
    for (int k = 0; k < K; ++k) off[k] += run * inner_stride[k];
    for (int d = nd - 1; d > 0 && idx[d] == bc.shape[d]; --d) {  // carry
      idx[d] = 0;
      ++idx[d - 1];
      for (int k = 0; k < K; ++k) off[k] += bc.stride[k][d - 1] - bc.shape[d] * bc.stride[k][d];
    }
  }
}

}  // namespace

template <typename T>
void unary(ThreadPool& pool, UnaryOp op, const T* x, T p0, T p1, T* y, int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = unary_value<T>(op, x[i], p0, p1);
  });
}

template <typename T>
void unary_backward(ThreadPool& pool, UnaryOp op, const T* dy, const T* x, const T* y, T p0, T p1, T* dx,
                    int64_t n) {
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = unary_grad_value<T>(op, dy[i], x[i], y[i], p0, p1);
  });
}

template <typename T>
void binary(ThreadPool& pool, BinaryOp op, const Broadcast& bc, const T* a, const T* b, T* out) {
  pool.parallel_for(bc.numel(), kGrain, [&, op, a, b, out](int64_t i0, int64_t i1) {
    strided_range<2>(bc, i0, i1, [&](int64_t i, const int64_t* o) { out[i] = binary_value<T>(op, a[o[0]], b[o[1]]); });
  });
}

template <typename T>
void where(ThreadPool& pool, const Broadcast& bc, const T* cond, const T* a, const T* b, T* out) {
  pool.parallel_for(bc.numel(), kGrain, [&, cond, a, b, out](int64_t i0, int64_t i1) {
    strided_range<3>(bc, i0, i1,
                     [&](int64_t i, const int64_t* o) { out[i] = cond[o[0]] != T(0) ? a[o[1]] : b[o[2]]; });
  });
}

template <typename T>
void reduce_to(ThreadPool& pool, const Broadcast& bc, const T* x, T* out, int64_t out_numel) {
  // x's contiguous strides; the kept dims (out stride != 0) locate an out element, the summed ones are walked.
  int64_t xs[kBroadcastMaxDims] = {};
  int64_t run = 1;
  for (int d = bc.ndim - 1; d >= 0; --d) {
    xs[d] = run;
    run *= bc.shape[d];
  }
  int kept[kBroadcastMaxDims], summed[kBroadcastMaxDims], nk = 0, ns = 0;
  int64_t count = 1;
  for (int d = 0; d < bc.ndim; ++d) {
    if (bc.stride[0][d] != 0) {
      kept[nk++] = d;
    } else {
      summed[ns++] = d;
      count *= bc.shape[d];
    }
  }
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(count, 1));
  pool.parallel_for(out_numel, grain, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      int64_t base = 0;
      for (int k = 0; k < nk; ++k) {
        const int d = kept[k];
        base += (u / bc.stride[0][d]) % bc.shape[d] * xs[d];
      }
      double s = 0.0;
      int64_t idx[kBroadcastMaxDims] = {};
      int64_t off = base;
      for (int64_t r = 0; r < count; ++r) {
        s += static_cast<double>(x[off]);
        for (int k = ns - 1; k >= 0; --k) {  // odometer over the summed dims
          const int d = summed[k];
          off += xs[d];
          if (++idx[k] < bc.shape[d]) break;
          off -= bc.shape[d] * xs[d];
          idx[k] = 0;
        }
      }
      out[u] = static_cast<T>(s);
    }
  });
}

template <typename T>
void foreach_update(ThreadPool& pool, const ForeachArgs& args, T* dst, const T* x, const T* y, int64_t n) {
  const ForeachArgs f = args;
  pool.parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = foreach_value<T>(f, dst[i], x[i], y ? y[i] : T(0));
  });
}

#define ENGINE_INSTANTIATE(T)                                                                          \
  template void unary<T>(ThreadPool&, UnaryOp, const T*, T, T, T*, int64_t);                           \
  template void unary_backward<T>(ThreadPool&, UnaryOp, const T*, const T*, const T*, T, T, T*, int64_t); \
  template void binary<T>(ThreadPool&, BinaryOp, const Broadcast&, const T*, const T*, T*);           \
  template void where<T>(ThreadPool&, const Broadcast&, const T*, const T*, const T*, T*);            \
  template void reduce_to<T>(ThreadPool&, const Broadcast&, const T*, T*, int64_t);                   \
  template void foreach_update<T>(ThreadPool&, const ForeachArgs&, T*, const T*, const T*, int64_t);
ENGINE_INSTANTIATE(float)
ENGINE_INSTANTIATE(double)
#undef ENGINE_INSTANTIATE

}  // namespace engine::cpu
