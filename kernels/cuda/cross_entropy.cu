// Cross-entropy forward (row losses and log-sum-exp) and backward (dlogits, optionally in place) for a chunk
// of rows, and the deterministic scaled sum that turns row losses into the loss (CPU reference:
// kernels/cpu/cross_entropy.cpp; the math is in cross_entropy.cuh).
//
// Layout: logits, dlogits (R, V) row-major in T (float or bf16); labels (R) int32; row_loss, lse (R) float.
//
// Shape:
// - forward: one block per row (up to 1024 threads), 16-byte vector loads when V is a multiple of the
//   vector and the pointers are aligned (Qwen's V = 152064 is). Each thread keeps an online (max, sum of
//   exp) over its elements; the block merges them in a fixed butterfly (row_reduce.cuh). The row is read
//   once: R V elements read, 2 R floats written. No workspace, so a row is never split over blocks; the
//   fused loss's chunks have enough rows (~100 at V = 152k) to fill the GPU.
// - backward: purely elementwise given lse: a 2-D grid, x over the vectors of a row, y over rows (a grid-
//   stride loop past 65535 rows). The coefficient *dloss * scale is read on the device. Each element is read
//   and written by the same thread, so dlogits may alias logits. R V elements read and written.
// - sum_scaled: one block of 1024 threads; thread t adds values t, t + 1024, ... in double, then a fixed
//   butterfly; n is a chunk's or a batch's rows (thousands), so one block is plenty.
#include <cmath>

#include "kernels/cuda/cross_entropy.cuh"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/row_reduce.cuh"

namespace engine::cuda {

namespace {

using detail::aligned16;
using detail::block_max_sum;
using detail::block_sum;
using detail::kVec;
using detail::load_f32;
using detail::max_sum_add;
using detail::MaxSum;
using detail::row_block_threads;
using detail::store_f32;
using detail::to_f32;

constexpr int kBackwardThreads = 256;
constexpr int kSumThreads = 1024;

template <typename T, int VEC>
__global__ void cross_entropy_forward_kernel(const T* logits, const int32_t* labels, int64_t V,
                                             int64_t ignore_index, float* row_loss, float* lse) {
  const int64_t row = blockIdx.x;
  const int64_t label = labels[row];
  if (label == ignore_index) {  // the same for the whole block: no thread reaches a barrier
    if (threadIdx.x == 0) {
      row_loss[row] = 0.0f;
      lse[row] = 0.0f;
    }
    return;
  }
  const T* z = logits + row * V;  // (V)
  const int64_t stride = static_cast<int64_t>(blockDim.x) * VEC;
  MaxSum st{-INFINITY, 0.0f};
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < V; j += stride) {
    float v[VEC];
    load_f32<T, VEC>(z + j, v);
    max_sum_add<VEC>(st, v);
  }
  st = block_max_sum(st);
  if (threadIdx.x == 0) {
    const float l = st.m + logf(st.s);
    lse[row] = l;
    row_loss[row] = (label >= 0 && label < V) ? l - to_f32(z[label]) : NAN;
  }
}

// grid: x over vectors of a row (VEC elements per thread), y over rows (grid-stride).
template <typename T, int VEC>
__global__ void cross_entropy_backward_kernel(const T* logits, const int32_t* labels, const float* lse,
                                              int64_t R, int64_t V, int64_t ignore_index, const float* dloss,
                                              float scale, T* dlogits) {
  const int64_t j = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
  if (j >= V) return;
  const float coef = *dloss * scale;
  for (int64_t row = blockIdx.y; row < R; row += gridDim.y) {
    const int64_t off = row * V + j;
    const int64_t label = labels[row];
    float g[VEC];
    if (label == ignore_index) {
#pragma unroll
      for (int k = 0; k < VEC; ++k) g[k] = 0.0f;
    } else {
      const float l = lse[row];
      load_f32<T, VEC>(logits + off, g);
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        g[k] = expf(g[k] - l) * coef;
        if (j + k == label) g[k] -= coef;
      }
    }
    store_f32<T, VEC>(dlogits + off, g);
  }
}

__global__ void sum_scaled_kernel(const float* values, int64_t n, float scale, float* out, bool accumulate) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += static_cast<double>(values[i]);
  acc = block_sum(acc);
  if (threadIdx.x == 0) {
    const double total = static_cast<double>(scale) * acc;
    *out = accumulate ? static_cast<float>(static_cast<double>(*out) + total) : static_cast<float>(total);
  }
}

template <typename T, int VEC>
void launch_backward(cudaStream_t stream, const T* logits, const int32_t* labels, const float* lse, int64_t R,
                     int64_t V, int64_t ignore_index, const float* dloss, float scale, T* dlogits) {
  const int64_t vecs = (V + VEC - 1) / VEC;
  const dim3 grid(static_cast<unsigned>((vecs + kBackwardThreads - 1) / kBackwardThreads),
                  static_cast<unsigned>(R < 65535 ? R : 65535));
  cross_entropy_backward_kernel<T, VEC>
      <<<grid, kBackwardThreads, 0, stream>>>(logits, labels, lse, R, V, ignore_index, dloss, scale, dlogits);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

template <typename T>
void cross_entropy_forward(cudaStream_t stream, const T* logits, const int32_t* labels, int64_t R, int64_t V,
                           int64_t ignore_index, float* row_loss, float* lse) {
  if (R <= 0) return;
  if (V % kVec<T> == 0 && aligned16(logits)) {
    const int threads = row_block_threads(V / kVec<T>, 1024);
    cross_entropy_forward_kernel<T, kVec<T>>
        <<<static_cast<unsigned>(R), threads, 0, stream>>>(logits, labels, V, ignore_index, row_loss, lse);
  } else {
    const int threads = row_block_threads(V, 1024);
    cross_entropy_forward_kernel<T, 1>
        <<<static_cast<unsigned>(R), threads, 0, stream>>>(logits, labels, V, ignore_index, row_loss, lse);
  }
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void cross_entropy_backward(cudaStream_t stream, const T* logits, const int32_t* labels, const float* lse,
                            int64_t R, int64_t V, int64_t ignore_index, const float* dloss, float scale,
                            T* dlogits) {
  if (R <= 0 || V <= 0) return;
  if (V % kVec<T> == 0 && aligned16(logits) && aligned16(dlogits))
    launch_backward<T, kVec<T>>(stream, logits, labels, lse, R, V, ignore_index, dloss, scale, dlogits);
  else
    launch_backward<T, 1>(stream, logits, labels, lse, R, V, ignore_index, dloss, scale, dlogits);
}

void sum_scaled(cudaStream_t stream, const float* values, int64_t n, float scale, float* out,
                bool accumulate) {
  sum_scaled_kernel<<<1, kSumThreads, 0, stream>>>(values, n < 0 ? 0 : n, scale, out, accumulate);
  CUDA_CHECK_LAUNCH();
}

#define ENGINE_INSTANTIATE(T)                                                                               \
  template void cross_entropy_forward<T>(cudaStream_t, const T*, const int32_t*, int64_t, int64_t, int64_t, \
                                         float*, float*);                                                   \
  template void cross_entropy_backward<T>(cudaStream_t, const T*, const int32_t*, const float*, int64_t,    \
                                          int64_t, int64_t, const float*, float, T*);
ENGINE_INSTANTIATE(float)
ENGINE_INSTANTIATE(__nv_bfloat16)
#undef ENGINE_INSTANTIATE

}  // namespace engine::cuda
