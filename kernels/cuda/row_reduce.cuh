// Device helpers shared by the row kernels (rmsnorm, softmax, cross_entropy): fp32 conversion of the storage
// type, 16-byte vector loads and stores, and deterministic warp / block reductions.
//
// Determinism: the reductions are xor butterflies over a warp, then the per-warp results (in warp order) are
// reduced by one more butterfly. Floating-point addition is commutative, so every lane of a butterfly ends
// with the same bits, and the association order depends only on blockDim; for a fixed launch shape the
// result is bitwise the same on every run. No atomics.
//
// Vector width: kVec<T> elements make 16 bytes (float: 4, bf16: 8). A launcher uses the vector path only
// when the row length is a multiple of kVec<T> and every pointer is 16-byte aligned (aligned16), and
// otherwise instantiates the same kernel with VEC = 1.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

namespace engine::cuda::detail {

template <typename T>
inline constexpr int kVec = static_cast<int>(16 / sizeof(T));

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Threads for a block that walks a row of `vecs` vectors: vecs rounded up to a warp, within [32,
// max_threads].
inline int row_block_threads(int64_t vecs, int max_threads) {
  int64_t t = (vecs + 31) / 32 * 32;
  if (t < 32) t = 32;
  if (t > max_threads) t = max_threads;
  return static_cast<int>(t);
}

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// out[k] = float(p[k]) for k < VEC; p is 16-byte aligned when VEC * sizeof(T) == 16.
template <typename T, int VEC>
__device__ __forceinline__ void load_f32(const T* p, float (&out)[VEC]) {
  if constexpr (VEC * sizeof(T) == 16) {
    const int4 raw = *reinterpret_cast<const int4*>(p);
    T v[VEC];
    memcpy(v, &raw, 16);
#pragma unroll
    for (int k = 0; k < VEC; ++k) out[k] = to_f32(v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) out[k] = to_f32(p[k]);
  }
}

// p[k] = T(in[k]) (round to nearest even for bf16).
template <typename T, int VEC>
__device__ __forceinline__ void store_f32(T* p, const float (&in)[VEC]) {
  if constexpr (VEC * sizeof(T) == 16) {
    T v[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = from_f32<T>(in[k]);
    int4 raw;
    memcpy(&raw, v, 16);
    *reinterpret_cast<int4*>(p) = raw;
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) p[k] = from_f32<T>(in[k]);
  }
}

template <typename U>
__device__ __forceinline__ U warp_sum(U v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, every thread calls it); every thread gets the total.
template <typename U>
__device__ __forceinline__ U block_sum(U v) {
  __shared__ U scratch[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // a previous call may still be reading scratch
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_sum(lane < warps ? scratch[lane] : U(0));
}

// Running (max, sum of exp(x - max)) of a softmax row.
struct MaxSum {
  float m;  // -inf while empty
  float s;  // sum of exp(x - m)
};

__device__ __forceinline__ MaxSum max_sum_merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.0f};
  // explicit roundings (no FMA contraction): merge(a, b) and merge(b, a) give the same bits, so both lanes of
  // a butterfly step agree and every thread ends with the same state.
  return {m, __fadd_rn(__fmul_rn(a.s, expf(a.m - m)), __fmul_rn(b.s, expf(b.m - m)))};
}

// Adds VEC values to a running state: one rescale per vector, then the exponentials.
template <int VEC>
__device__ __forceinline__ void max_sum_add(MaxSum& st, const float (&v)[VEC]) {
  float mv = v[0];
#pragma unroll
  for (int k = 1; k < VEC; ++k) mv = fmaxf(mv, v[k]);
  if (mv == -INFINITY) return;  // all -inf: contributes nothing
  if (mv > st.m) {
    st.s *= expf(st.m - mv);  // 0 while empty (exp(-inf))
    st.m = mv;
  }
  float add = 0.0f;
#pragma unroll
  for (int k = 0; k < VEC; ++k) add += expf(v[k] - st.m);
  st.s += add;
}

__device__ __forceinline__ MaxSum warp_max_sum(MaxSum st) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.s, o)};
    st = max_sum_merge(st, other);
  }
  return st;
}

// Block-wide merge of the running states; every thread gets the row's (max, sum).
__device__ __forceinline__ MaxSum block_max_sum(MaxSum st) {
  __shared__ float sm[32], ss[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  st = warp_max_sum(st);
  __syncthreads();
  if (lane == 0) {
    sm[warp] = st.m;
    ss[warp] = st.s;
  }
  __syncthreads();
  MaxSum w = lane < warps ? MaxSum{sm[lane], ss[lane]} : MaxSum{-INFINITY, 0.0f};
  return warp_max_sum(w);
}

}  // namespace engine::cuda::detail
