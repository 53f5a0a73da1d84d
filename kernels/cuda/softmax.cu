// Softmax forward and backward over the last dim on CUDA (CPU reference: kernels/cpu/softmax.cpp; the math is
// in softmax.cuh).
//
// Layout: x, y, dy, dx (N, C) row-major in T (float or bf16); fp32 math.
//
// Shape: one block per row (up to 1024 threads, fewer for short rows), 16-byte vector loads when C is a
// multiple of the vector and the pointers are aligned. Forward: each thread keeps an online (max, sum of
// exp(x - max)) over its elements, rescaling once per vector, so the row is read once for the statistics;
// the block merges the states in a fixed butterfly (row_reduce.cuh), then a second pass writes
// exp(x - max) / sum (that read mostly hits L2: a 152k fp32 row is 600 KB). Backward: a block sum of dy * y,
// then dx = y * (dy - sum). Memory bound: forward reads 2 N C and writes N C elements, backward reads 4 N C
// and writes N C.
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/row_reduce.cuh"
#include "kernels/cuda/softmax.cuh"

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

template <typename T, int VEC>
__global__ void softmax_forward_kernel(const T* x, T* y, int64_t C) {
  const int64_t off = static_cast<int64_t>(blockIdx.x) * C;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * VEC;
  MaxSum st{-INFINITY, 0.0f};
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < C; j += stride) {
    float v[VEC];
    load_f32<T, VEC>(x + off + j, v);
    max_sum_add<VEC>(st, v);
  }
  st = block_max_sum(st);  // barriers inside: every read above precedes the writes below (y may alias x)
  const float inv = 1.0f / st.s;
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < C; j += stride) {
    float v[VEC];
    load_f32<T, VEC>(x + off + j, v);
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = expf(v[k] - st.m) * inv;
    store_f32<T, VEC>(y + off + j, v);
  }
}

template <typename T, int VEC>
__global__ void softmax_backward_kernel(const T* dy, const T* y, T* dx, int64_t C) {
  const int64_t off = static_cast<int64_t>(blockIdx.x) * C;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * VEC;
  float dot = 0.0f;
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < C; j += stride) {
    float g[VEC], p[VEC];
    load_f32<T, VEC>(dy + off + j, g);
    load_f32<T, VEC>(y + off + j, p);
#pragma unroll
    for (int k = 0; k < VEC; ++k) dot += g[k] * p[k];
  }
  dot = block_sum(dot);
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * VEC; j < C; j += stride) {
    float g[VEC], p[VEC];
    load_f32<T, VEC>(dy + off + j, g);
    load_f32<T, VEC>(y + off + j, p);
#pragma unroll
    for (int k = 0; k < VEC; ++k) g[k] = p[k] * (g[k] - dot);
    store_f32<T, VEC>(dx + off + j, g);
  }
}

}  // namespace

template <typename T>
void softmax_forward(cudaStream_t stream, const T* x, T* y, int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return;
  if (C % kVec<T> == 0 && aligned16(x) && aligned16(y)) {
    const int threads = row_block_threads(C / kVec<T>, 1024);
    softmax_forward_kernel<T, kVec<T>><<<static_cast<unsigned>(N), threads, 0, stream>>>(x, y, C);
  } else {
    const int threads = row_block_threads(C, 1024);
    softmax_forward_kernel<T, 1><<<static_cast<unsigned>(N), threads, 0, stream>>>(x, y, C);
  }
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void softmax_backward(cudaStream_t stream, const T* dy, const T* y, T* dx, int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return;
  if (C % kVec<T> == 0 && aligned16(dy) && aligned16(y) && aligned16(dx)) {
    const int threads = row_block_threads(C / kVec<T>, 1024);
    softmax_backward_kernel<T, kVec<T>><<<static_cast<unsigned>(N), threads, 0, stream>>>(dy, y, dx, C);
  } else {
    const int threads = row_block_threads(C, 1024);
    softmax_backward_kernel<T, 1><<<static_cast<unsigned>(N), threads, 0, stream>>>(dy, y, dx, C);
  }
  CUDA_CHECK_LAUNCH();
}

template void softmax_forward<float>(cudaStream_t, const float*, float*, int64_t, int64_t);
template void softmax_forward<__nv_bfloat16>(cudaStream_t, const __nv_bfloat16*, __nv_bfloat16*, int64_t,
                                             int64_t);
template void softmax_backward<float>(cudaStream_t, const float*, const float*, float*, int64_t, int64_t);
template void softmax_backward<__nv_bfloat16>(cudaStream_t, const __nv_bfloat16*, const __nv_bfloat16*,
                                              __nv_bfloat16*, int64_t, int64_t);

}  // namespace engine::cuda
