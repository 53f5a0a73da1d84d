// Pointwise math: unary functions and derivatives, broadcast binary functions and where, the reduction back
// to an operand's shape, and the multi-tensor optimizer updates. The GPU twin of kernels/cpu/pointwise.cpp.
//
// Math: fp32 per element (bf16 loaded and stored through fp32, one rounding at the store), as the scalar
// definitions of kernels/cpu/pointwise.hpp compute it.
//
// Shape: the unary and foreach kernels are flat (memory bound: 2-4 loads and one store per element, no
// reuse). The broadcast kernels decode each output index into operand offsets with one division per merged
// dim (engine/runtime/ops/broadcast.cpp merges dims that are contiguous for every operand, so the common
// same-shape case is one dim). reduce_to gives each output element a block (256 threads over its summed range,
// then a fixed shared-memory tree), or a thread when it sums at most 64 elements. foreach packs up to 64
// tensors' pointers into the kernel parameters (about 2.3 KB of the 4 KB allowed) with a table of their first
// blocks, so an optimizer step over hundreds of parameters is a handful of launches instead of one per tensor.
#include <algorithm>
#include <vector>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/pointwise.cuh"

namespace engine::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float sign_f(float x) { return x > 0.f ? 1.f : x < 0.f ? -1.f : x == 0.f ? 0.f : x; }

__device__ __forceinline__ float unary_f(UnaryOp op, float x, float p0, float p1) {
  switch (op) {
    case UnaryOp::Sqrt: return sqrtf(x);
    case UnaryOp::Rsqrt: return 1.f / sqrtf(x);
    case UnaryOp::Abs: return fabsf(x);
    case UnaryOp::Sign: return sign_f(x);
    case UnaryOp::PowScalar: return powf(x, p0);
    case UnaryOp::Clamp: return x != x ? x : fminf(fmaxf(x, p0), p1);
  }
  return x;
}

__device__ __forceinline__ float unary_grad_f(UnaryOp op, float dy, float x, float y, float p0, float p1) {
  switch (op) {
    case UnaryOp::Sqrt: return dy * 0.5f / y;
    case UnaryOp::Rsqrt: return -0.5f * dy * (y * y * y);
    case UnaryOp::Abs: return dy * sign_f(x);
    case UnaryOp::Sign: return 0.f;
    case UnaryOp::PowScalar: return p0 == 0.f ? 0.f : dy * p0 * powf(x, p0 - 1.f);
    case UnaryOp::Clamp: return x >= p0 && x <= p1 ? dy : 0.f;
  }
  return 0.f;
}

__device__ __forceinline__ float binary_f(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Maximum: return a != a || b != b ? a + b : fmaxf(a, b);
    case BinaryOp::Minimum: return a != a || b != b ? a + b : fminf(a, b);
    case BinaryOp::MaxSelect: return a > b ? 1.f : a == b ? 0.5f : 0.f;
    case BinaryOp::MinSelect: return a < b ? 1.f : a == b ? 0.5f : 0.f;
  }
  return a;
}

// fp32 coefficients of a ForeachArgs, as the kernel reads them.
struct ForeachCoef {
  ForeachOp op;
  float a, b, c, d, eps;
  int sqrt_y;
};

// Every product and sum rounded on its own (the _rn intrinsics are never contracted into an FMA), as the CPU's
// foreach_value rounds them: an f32 update is then the CPU's bit for bit. With contraction, b x + d y near 0
// took the other sign in AddSign, a step of 2c on such elements (measured: 1.0% relative on the H200).
__device__ __forceinline__ float foreach_f(const ForeachCoef& f, float dst, float x, float y) {
  switch (f.op) {
    case ForeachOp::Axpby: return __fadd_rn(__fmul_rn(f.a, dst), __fmul_rn(f.b, x));
    case ForeachOp::Addcmul: return __fadd_rn(__fmul_rn(f.a, dst), __fmul_rn(f.c, __fmul_rn(x, y)));
    case ForeachOp::Addcdiv: {
      const float dy = __fmul_rn(f.d, y);
      const float den = __fadd_rn(f.sqrt_y ? __fsqrt_rn(dy) : dy, f.eps);
      return __fadd_rn(__fmul_rn(f.a, dst), __fmul_rn(f.c, __fdiv_rn(x, den)));
    }
    case ForeachOp::AddSign:
      return __fadd_rn(__fmul_rn(f.a, dst), __fmul_rn(f.c, sign_f(__fadd_rn(__fmul_rn(f.b, x), __fmul_rn(f.d, y)))));
  }
  return dst;
}

template <int K>
__device__ __forceinline__ void offsets_of(const Broadcast& bc, int64_t i, int64_t (&off)[K]) {
#pragma unroll
  for (int k = 0; k < K; ++k) off[k] = 0;
  for (int d = bc.ndim - 1; d >= 0; --d) {
    const int64_t q = i / bc.shape[d], r = i - q * bc.shape[d];
    i = q;
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] += r * bc.stride[k][d];
  }
}

// A grid-stride loop over [0, n) with 64-bit indices.
#define GRID_STRIDE(i, n)                                                                        \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);        \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

template <typename T>
__global__ void unary_kernel(UnaryOp op, const T* __restrict__ x, float p0, float p1, T* __restrict__ y,
                             int64_t n) {
  GRID_STRIDE(i, n) y[i] = detail::from_f32<T>(unary_f(op, detail::to_f32(x[i]), p0, p1));
}

template <typename T>
__global__ void unary_backward_kernel(UnaryOp op, const T* __restrict__ dy, const T* __restrict__ x,
                                      const T* __restrict__ y, float p0, float p1, T* __restrict__ dx, int64_t n) {
  GRID_STRIDE(i, n) {
    const float yv = y != nullptr ? detail::to_f32(y[i]) : 0.f;
    dx[i] = detail::from_f32<T>(unary_grad_f(op, detail::to_f32(dy[i]), detail::to_f32(x[i]), yv, p0, p1));
  }
}

template <typename T>
__global__ void binary_kernel(BinaryOp op, Broadcast bc, const T* __restrict__ a, const T* __restrict__ b,
                              T* __restrict__ out, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t o[2];
    offsets_of<2>(bc, i, o);
    out[i] = detail::from_f32<T>(binary_f(op, detail::to_f32(a[o[0]]), detail::to_f32(b[o[1]])));
  }
}

template <typename T>
__global__ void where_kernel(Broadcast bc, const T* __restrict__ c, const T* __restrict__ a,
                             const T* __restrict__ b, T* __restrict__ out, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t o[3];
    offsets_of<3>(bc, i, o);
    out[i] = detail::to_f32(c[o[0]]) != 0.f ? a[o[1]] : b[o[2]];
  }
}

// What reduce_to walks: the kept dims locate an output element (its index / out_stride % shape, times the
// input's stride), the summed dims are decoded from the position in the summed range.
struct ReducePlan {
  int nk = 0, ns = 0;
  int64_t count = 1;  // elements summed per output
  int64_t k_shape[cpu::kBroadcastMaxDims], k_out_stride[cpu::kBroadcastMaxDims], k_x_stride[cpu::kBroadcastMaxDims];
  int64_t s_shape[cpu::kBroadcastMaxDims], s_x_stride[cpu::kBroadcastMaxDims];
};

__device__ __forceinline__ int64_t reduce_base(const ReducePlan& p, int64_t u) {
  int64_t base = 0;
  for (int k = 0; k < p.nk; ++k) base += (u / p.k_out_stride[k]) % p.k_shape[k] * p.k_x_stride[k];
  return base;
}

__device__ __forceinline__ int64_t reduce_offset(const ReducePlan& p, int64_t r) {
  int64_t off = 0;
  for (int k = p.ns - 1; k >= 0; --k) {
    const int64_t q = r / p.s_shape[k];
    off += (r - q * p.s_shape[k]) * p.s_x_stride[k];
    r = q;
  }
  return off;
}

// One thread per output element (short sums).
template <typename T>
__global__ void reduce_thread_kernel(ReducePlan p, const T* __restrict__ x, T* __restrict__ out, int64_t m) {
  GRID_STRIDE(u, m) {
    const int64_t base = reduce_base(p, u);
    float s = 0.f;
    for (int64_t r = 0; r < p.count; ++r) s += detail::to_f32(x[base + reduce_offset(p, r)]);
    out[u] = detail::from_f32<T>(s);
  }
}

// One block per output element: each thread sums r = tid, tid + 256, ...; then a fixed tree.
template <typename T>
__global__ void reduce_block_kernel(ReducePlan p, const T* __restrict__ x, T* __restrict__ out, int64_t m) {
  __shared__ float part[kThreads];
  for (int64_t u = blockIdx.x; u < m; u += gridDim.x) {
    const int64_t base = reduce_base(p, u);
    float s = 0.f;
    for (int64_t r = threadIdx.x; r < p.count; r += blockDim.x) s += detail::to_f32(x[base + reduce_offset(p, r)]);
    part[threadIdx.x] = s;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
      if (static_cast<int>(threadIdx.x) < w) part[threadIdx.x] += part[threadIdx.x + w];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[u] = detail::from_f32<T>(part[0]);
    __syncthreads();
  }
}

constexpr int kForeachChunk = 2048;  // elements per block

template <typename T>
struct ForeachLaunch {
  T* dst[kForeachBatch];
  const T* x[kForeachBatch];
  const T* y[kForeachBatch];
  int64_t numel[kForeachBatch];
  int first_block[kForeachBatch + 1];
  int count;
};

template <typename T>
__global__ void foreach_kernel(ForeachCoef f, ForeachLaunch<T> L) {
  const int blk = static_cast<int>(blockIdx.x);
  int t = 0;
  while (t + 1 < L.count && L.first_block[t + 1] <= blk) ++t;
  const int64_t begin = static_cast<int64_t>(blk - L.first_block[t]) * kForeachChunk;
  const int64_t end = min(begin + kForeachChunk, L.numel[t]);
  T* __restrict__ dst = L.dst[t];
  const T* __restrict__ x = L.x[t];
  const T* __restrict__ y = L.y[t];
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const float yv = y != nullptr ? detail::to_f32(y[j]) : 0.f;
    dst[j] = detail::from_f32<T>(foreach_f(f, detail::to_f32(dst[j]), detail::to_f32(x[j]), yv));
  }
}

}  // namespace

template <typename T>
void unary(cudaStream_t stream, UnaryOp op, const T* x, float p0, float p1, T* y, int64_t n) {
  ENGINE_CUDA_REQUIRE(n >= 0, "unary: negative element count");
  if (n == 0) return;
  unary_kernel<T><<<detail::grid_blocks(n, kThreads), kThreads, 0, stream>>>(op, x, p0, p1, y, n);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void unary_backward(cudaStream_t stream, UnaryOp op, const T* dy, const T* x, const T* y, float p0, float p1,
                    T* dx, int64_t n) {
  ENGINE_CUDA_REQUIRE(n >= 0, "unary_backward: negative element count");
  if (n == 0) return;
  unary_backward_kernel<T><<<detail::grid_blocks(n, kThreads), kThreads, 0, stream>>>(op, dy, x, y, p0, p1, dx, n);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void binary(cudaStream_t stream, BinaryOp op, const Broadcast& bc, const T* a, const T* b, T* out) {
  const int64_t n = bc.numel();
  if (n == 0) return;
  binary_kernel<T><<<detail::grid_blocks(n, kThreads), kThreads, 0, stream>>>(op, bc, a, b, out, n);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void where(cudaStream_t stream, const Broadcast& bc, const T* cond, const T* a, const T* b, T* out) {
  const int64_t n = bc.numel();
  if (n == 0) return;
  where_kernel<T><<<detail::grid_blocks(n, kThreads), kThreads, 0, stream>>>(bc, cond, a, b, out, n);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void reduce_to(cudaStream_t stream, const Broadcast& bc, const T* x, T* out, int64_t out_numel) {
  ENGINE_CUDA_REQUIRE(out_numel >= 0, "reduce_to: negative element count");
  if (out_numel == 0) return;
  ReducePlan p;
  int64_t run = 1;
  int64_t xs[cpu::kBroadcastMaxDims];
  for (int d = bc.ndim - 1; d >= 0; --d) {
    xs[d] = run;
    run *= bc.shape[d];
  }
  for (int d = 0; d < bc.ndim; ++d) {
    if (bc.stride[0][d] != 0) {
      p.k_shape[p.nk] = bc.shape[d];
      p.k_out_stride[p.nk] = bc.stride[0][d];
      p.k_x_stride[p.nk] = xs[d];
      ++p.nk;
    } else {
      p.s_shape[p.ns] = bc.shape[d];
      p.s_x_stride[p.ns] = xs[d];
      p.count *= bc.shape[d];
      ++p.ns;
    }
  }
  if (p.count <= 64) {
    reduce_thread_kernel<T><<<detail::grid_blocks(out_numel, kThreads), kThreads, 0, stream>>>(p, x, out, out_numel);
  } else {
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(out_numel, int64_t{1} << 16));
    reduce_block_kernel<T><<<blocks, kThreads, 0, stream>>>(p, x, out, out_numel);
  }
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void foreach_update(cudaStream_t stream, const ForeachArgs& args, int64_t n, T* const* dst, const T* const* x,
                    const T* const* y, const int64_t* numel) {
  ENGINE_CUDA_REQUIRE(n >= 0, "foreach_update: negative list length");
  const ForeachCoef f{args.op,
                      static_cast<float>(args.a),
                      static_cast<float>(args.b),
                      static_cast<float>(args.c),
                      static_cast<float>(args.d),
                      static_cast<float>(args.eps),
                      args.sqrt_y ? 1 : 0};
  int64_t i = 0;
  while (i < n) {
    ForeachLaunch<T> L{};
    int64_t blocks = 0;
    L.count = 0;
    for (; i < n && L.count < kForeachBatch; ++i) {
      if (numel[i] == 0) continue;
      const int64_t b = (numel[i] + kForeachChunk - 1) / kForeachChunk;
      if (L.count > 0 && blocks + b > (int64_t{1} << 30)) break;  // the next launch takes it
      ENGINE_CUDA_REQUIRE(b <= (int64_t{1} << 30), "foreach_update: a tensor of more than 2^41 elements");
      L.dst[L.count] = dst[i];
      L.x[L.count] = x[i];
      L.y[L.count] = y != nullptr ? y[i] : nullptr;
      L.numel[L.count] = numel[i];
      L.first_block[L.count] = static_cast<int>(blocks);
      blocks += b;
      ++L.count;
    }
    if (L.count == 0) continue;
    L.first_block[L.count] = static_cast<int>(blocks);
    foreach_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(f, L);
    CUDA_CHECK_LAUNCH();
  }
}

#define ENGINE_INSTANTIATE(T)                                                                                  \
  template void unary<T>(cudaStream_t, UnaryOp, const T*, float, float, T*, int64_t);                          \
  template void unary_backward<T>(cudaStream_t, UnaryOp, const T*, const T*, const T*, float, float, T*,       \
                                  int64_t);                                                                    \
  template void binary<T>(cudaStream_t, BinaryOp, const Broadcast&, const T*, const T*, T*);                  \
  template void where<T>(cudaStream_t, const Broadcast&, const T*, const T*, const T*, T*);                   \
  template void reduce_to<T>(cudaStream_t, const Broadcast&, const T*, T*, int64_t);                          \
  template void foreach_update<T>(cudaStream_t, const ForeachArgs&, int64_t, T* const*, const T* const*,       \
                                  const T* const*, const int64_t*);
ENGINE_INSTANTIATE(float)
ENGINE_INSTANTIATE(__nv_bfloat16)
#undef ENGINE_INSTANTIATE

}  // namespace engine::cuda
