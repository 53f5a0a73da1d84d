// RMSNorm forward and backward on CUDA, and the residual add fused into the forward (CPU reference:
// kernels/cpu/rmsnorm.cpp; the math and the aliasing rules are in rmsnorm.cuh).
//
//   rstd = 1 / sqrt(sum(x^2) / C + eps)       sum in fp32, the last step in double like the CPU reference
//   y    = (x * rstd) * w
//   dx   = rstd * (dy * w - x * rstd * m),    m = rstd * sum(dy * w * x) / C
//   dw   = sum over rows of dy * x * rstd
//
// Layout: x, y, dy, dx (N, C) row-major in T (float or bf16), w, dw (C) in T, rstd (N) float.
//
// Shape of the kernels:
// - forward: one warp per row when C <= 1024 (8 rows per 256-thread block, warp shuffles only), else one
//   block per row. Each thread walks its row in 16-byte vectors (4 floats / 8 bf16) when C is a multiple of
//   the vector and the pointers are aligned, scalars otherwise. The row is read twice (sum of squares, then
//   the scaled write); the second read hits L1/L2 (a row is at most 32 KiB). Memory bound: 2 N C elements
//   read (3 with the residual), N C (2 N C) written.
// - backward: one block per fixed block of kRmsnormRowBlock rows, the rows in order. Per row a block
//   reduction gives m, then each thread writes dx for its columns and adds dy * xhat into its own slots of a
//   shared-memory accumulator (no thread shares a slot, so no atomics). The block writes its (C) partial to
//   the workspace; a second kernel sums the partials of each column in block order. The partition depends
//   only on N, so dw is bitwise the same on every run and the same blocks as the CPU reference.
#include <cmath>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/row_reduce.cuh"

namespace engine::cuda {

namespace {

using detail::aligned16;
using detail::block_sum;
using detail::from_f32;
using detail::kVec;
using detail::load_f32;
using detail::row_block_threads;
using detail::store_f32;
using detail::to_f32;
using detail::warp_sum;

constexpr int64_t kWarpRowMaxC = 1024;  // forward: a warp per row up to this C, a block per row above
constexpr int kWarpRowsPerBlock = 8;    // forward, warp per row: 256 threads

// kWarpPerRow: a warp per row (blockDim = 32 * kWarpRowsPerBlock); else a block per row.
// kAdd: the row is T(x + residual), written to sum_out first.
template <typename T, int VEC, bool kWarpPerRow, bool kAdd>
__global__ void rmsnorm_forward_kernel(const T* x, const T* residual, const T* w, int64_t N, int64_t C,
                                       float eps, T* sum_out, T* y, float* rstd) {
  int64_t row;
  int tid, nthreads;
  if constexpr (kWarpPerRow) {
    row = static_cast<int64_t>(blockIdx.x) * kWarpRowsPerBlock + threadIdx.x / 32;
    tid = threadIdx.x & 31;
    nthreads = 32;
    if (row >= N) return;  // whole warp leaves; no block-wide barrier follows
  } else {
    row = blockIdx.x;
    tid = threadIdx.x;
    nthreads = blockDim.x;
  }
  const int64_t off = row * C;
  const int64_t stride = static_cast<int64_t>(nthreads) * VEC;

  // pass 1: sum of squares (and the residual add)
  float ss = 0.0f;
  for (int64_t j = static_cast<int64_t>(tid) * VEC; j < C; j += stride) {
    float v[VEC];
    load_f32<T, VEC>(x + off + j, v);
    if constexpr (kAdd) {
      float r[VEC];
      load_f32<T, VEC>(residual + off + j, r);
#pragma unroll
      for (int k = 0; k < VEC; ++k) v[k] = to_f32(from_f32<T>(v[k] + r[k]));  // the stored (rounded) sum
      store_f32<T, VEC>(sum_out + off + j, v);
    }
#pragma unroll
    for (int k = 0; k < VEC; ++k) ss += v[k] * v[k];
  }
  if constexpr (kWarpPerRow)
    ss = warp_sum(ss);
  else
    ss = block_sum(ss);
  const float r = static_cast<float>(
      1.0 / sqrt(static_cast<double>(ss) / static_cast<double>(C) + static_cast<double>(eps)));
  if (rstd && tid == 0) rstd[row] = r;

  // pass 2: y = (x * rstd) * w; with kAdd the source is sum_out, written above by this same thread
  const T* src = kAdd ? sum_out : x;
  for (int64_t j = static_cast<int64_t>(tid) * VEC; j < C; j += stride) {
    float v[VEC], wv[VEC];
    load_f32<T, VEC>(src + off + j, v);
    load_f32<T, VEC>(w + j, wv);
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = (v[k] * r) * wv[k];
    store_f32<T, VEC>(y + off + j, v);
  }
}

// One block per kRmsnormRowBlock rows. acc: shared, `slots` floats laid out thread-minor, slot (it, k) of
// thread t at (it * VEC + k) * blockDim + t (conflict-free; each slot owned by one thread).
template <typename T, int VEC, bool kDw>
__global__ void rmsnorm_backward_kernel(const T* dy, const T* x, const T* w, const float* rstd, int64_t N,
                                        int64_t C, T* dx, float* partial) {
  extern __shared__ float acc[];
  const int tid = threadIdx.x;
  const int nthreads = blockDim.x;
  const int64_t stride = static_cast<int64_t>(nthreads) * VEC;
  const int64_t b = blockIdx.x;
  const int64_t n0 = b * kRmsnormRowBlock;
  const int64_t n1 = n0 + kRmsnormRowBlock < N ? n0 + kRmsnormRowBlock : N;
  if constexpr (kDw) {
    int it = 0;
    for (int64_t j = static_cast<int64_t>(tid) * VEC; j < C; j += stride, ++it)
#pragma unroll
      for (int k = 0; k < VEC; ++k) acc[(it * VEC + k) * nthreads + tid] = 0.0f;
  }
  for (int64_t n = n0; n < n1; ++n) {
    const int64_t off = n * C;
    const float r = rstd[n];
    float gx = 0.0f;  // sum_c dy * w * x
    for (int64_t j = static_cast<int64_t>(tid) * VEC; j < C; j += stride) {
      float g[VEC], xv[VEC], wv[VEC];
      load_f32<T, VEC>(dy + off + j, g);
      load_f32<T, VEC>(x + off + j, xv);
      load_f32<T, VEC>(w + j, wv);
#pragma unroll
      for (int k = 0; k < VEC; ++k) gx += (g[k] * wv[k]) * xv[k];
    }
    gx = block_sum(gx);  // its barriers also order every read of this row before the writes below
    const float m = gx * r / static_cast<float>(C);
    int it = 0;
    for (int64_t j = static_cast<int64_t>(tid) * VEC; j < C; j += stride, ++it) {
      float g[VEC], xv[VEC], wv[VEC], d[VEC];
      load_f32<T, VEC>(dy + off + j, g);
      load_f32<T, VEC>(x + off + j, xv);
      load_f32<T, VEC>(w + j, wv);
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        d[k] = r * (g[k] * wv[k] - xv[k] * r * m);
        if constexpr (kDw) acc[(it * VEC + k) * nthreads + tid] += g[k] * xv[k] * r;
      }
      store_f32<T, VEC>(dx + off + j, d);
    }
  }
  if constexpr (kDw) {
    float* pr = partial + b * C;  // (C) partial of this row block
    int it = 0;
    for (int64_t j = static_cast<int64_t>(tid) * VEC; j < C; j += stride, ++it)
#pragma unroll
      for (int k = 0; k < VEC; ++k) pr[j + k] = acc[(it * VEC + k) * nthreads + tid];
  }
}

// dw[c] = sum over b in order of partial[b, c].
template <typename T>
__global__ void rmsnorm_dw_reduce_kernel(const float* partial, int64_t blocks, int64_t C, T* dw) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) s += partial[b * C + c];
  dw[c] = from_f32<T>(s);
}

template <typename T, int VEC, bool kAdd>
void launch_forward(cudaStream_t stream, const T* x, const T* residual, const T* w, int64_t N, int64_t C,
                    float eps, T* sum_out, T* y, float* rstd) {
  if (C <= kWarpRowMaxC) {
    const int64_t blocks = (N + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock;
    rmsnorm_forward_kernel<T, VEC, true, kAdd>
        <<<static_cast<unsigned>(blocks), 32 * kWarpRowsPerBlock, 0, stream>>>(x, residual, w, N, C, eps,
                                                                               sum_out, y, rstd);
  } else {
    const int threads = row_block_threads((C + VEC - 1) / VEC, 512);
    rmsnorm_forward_kernel<T, VEC, false, kAdd>
        <<<static_cast<unsigned>(N), threads, 0, stream>>>(x, residual, w, N, C, eps, sum_out, y, rstd);
  }
  CUDA_CHECK_LAUNCH();
}

template <typename T, int VEC, bool kDw>
void launch_backward(cudaStream_t stream, const T* dy, const T* x, const T* w, const float* rstd, int64_t N,
                     int64_t C, T* dx, float* partial) {
  const int threads = row_block_threads((C + VEC - 1) / VEC, 512);
  const int64_t stride = static_cast<int64_t>(threads) * VEC;
  const size_t smem = kDw ? static_cast<size_t>((C + stride - 1) / stride * stride) * sizeof(float) : 0;
  auto kernel = rmsnorm_backward_kernel<T, VEC, kDw>;
  if (smem > 48 * 1024)
    CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int64_t blocks = (N + kRmsnormRowBlock - 1) / kRmsnormRowBlock;
  kernel<<<static_cast<unsigned>(blocks), threads, smem, stream>>>(dy, x, w, rstd, N, C, dx, partial);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

template <typename T>
void rmsnorm_forward(cudaStream_t stream, const T* x, const T* w, int64_t N, int64_t C, float eps, T* y,
                     float* rstd) {
  if (N <= 0 || C <= 0) return;
  if (C % kVec<T> == 0 && aligned16(x) && aligned16(w) && aligned16(y))
    launch_forward<T, kVec<T>, false>(stream, x, nullptr, w, N, C, eps, nullptr, y, rstd);
  else
    launch_forward<T, 1, false>(stream, x, nullptr, w, N, C, eps, nullptr, y, rstd);
}

template <typename T>
void add_rmsnorm_forward(cudaStream_t stream, const T* x, const T* residual, const T* w, int64_t N, int64_t C,
                         float eps, T* sum_out, T* y, float* rstd) {
  if (N <= 0 || C <= 0) return;
  if (C % kVec<T> == 0 && aligned16(x) && aligned16(residual) && aligned16(w) && aligned16(sum_out) &&
      aligned16(y))
    launch_forward<T, kVec<T>, true>(stream, x, residual, w, N, C, eps, sum_out, y, rstd);
  else
    launch_forward<T, 1, true>(stream, x, residual, w, N, C, eps, sum_out, y, rstd);
}

template <typename T>
void rmsnorm_backward(cudaStream_t stream, const T* dy, const T* x, const T* w, const float* rstd, int64_t N,
                      int64_t C, T* dx, T* dw, float* workspace) {
  if (C <= 0) return;
  if (N <= 0) {
    if (dw) CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(C) * sizeof(T), stream));  // +0 in T
    return;
  }
  const bool vec = C % kVec<T> == 0 && aligned16(dy) && aligned16(x) && aligned16(w) && aligned16(dx);
  if (dw) {
    if (vec)
      launch_backward<T, kVec<T>, true>(stream, dy, x, w, rstd, N, C, dx, workspace);
    else
      launch_backward<T, 1, true>(stream, dy, x, w, rstd, N, C, dx, workspace);
    const int64_t blocks = (N + kRmsnormRowBlock - 1) / kRmsnormRowBlock;
    rmsnorm_dw_reduce_kernel<T>
        <<<static_cast<unsigned>((C + 255) / 256), 256, 0, stream>>>(workspace, blocks, C, dw);
    CUDA_CHECK_LAUNCH();
  } else {
    if (vec)
      launch_backward<T, kVec<T>, false>(stream, dy, x, w, rstd, N, C, dx, nullptr);
    else
      launch_backward<T, 1, false>(stream, dy, x, w, rstd, N, C, dx, nullptr);
  }
}

#define ENGINE_INSTANTIATE(T)                                                                               \
  template void rmsnorm_forward<T>(cudaStream_t, const T*, const T*, int64_t, int64_t, float, T*, float*);  \
  template void add_rmsnorm_forward<T>(cudaStream_t, const T*, const T*, const T*, int64_t, int64_t, float, \
                                       T*, T*, float*);                                                     \
  template void rmsnorm_backward<T>(cudaStream_t, const T*, const T*, const T*, const float*, int64_t,      \
                                    int64_t, T*, T*, float*);
ENGINE_INSTANTIATE(float)
ENGINE_INSTANTIATE(__nv_bfloat16)
#undef ENGINE_INSTANTIATE

}  // namespace engine::cuda
