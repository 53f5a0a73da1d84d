// RoPE (rotary position embedding) on CUDA, forward and inverse rotation (CPU reference:
// kernels/cpu/rope.cpp; the math is in rope.cuh).
//
// Layout: x, y (B, T, H, D) row-major in T (float or bf16); positions (B, T) int32; inv_freq (rotary_dim / 2)
// float, on the device.
//
// Shape: one block per token (b, t). Its threads first compute cos/sin of the token's rotary_dim / 2 angles
// into shared memory (once per token, shared by all H heads), then walk the H * rotary_dim / 2 rotation pairs
// (consecutive threads touch consecutive dims: coalesced) and copy the pass-through dims. Each pair is read
// and written by one thread, so y may alias x.
//
// Accuracy: the angle is float(p) * inv_freq[i], one fp32 multiply exactly as the CPU reference forms it for
// float, and sincosf is the accurate libdevice version (this file is not built with --use_fast_math; the
// __sinf intrinsics would lose ~1e-3 at angles of 3e4 radians, i.e. positions ~32k), so fp32 results match
// the CPU's std::cos / std::sin within a few ulp at any position.
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/row_reduce.cuh"

namespace engine::cuda {

namespace {

using detail::from_f32;
using detail::to_f32;

constexpr int kRopeThreads = 128;

// grid: one block per token row r = b * T + t; dynamic shared memory: cos (half), then sin (half), floats.
template <typename T>
__global__ void rope_kernel(const T* x, const int32_t* positions, const float* inv_freq, int H, int D,
                            int half, bool inverse, T* y) {
  extern __shared__ float cs[];
  float* c = cs;
  float* s = cs + half;
  const int64_t r = blockIdx.x;
  const float pos = static_cast<float>(positions[r]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float a = pos * inv_freq[i];
    float sa, ca;
    sincosf(a, &sa, &ca);
    c[i] = ca;
    s[i] = inverse ? -sa : sa;
  }
  __syncthreads();
  const int64_t base = r * H * D;  // (H, D) of this token
  const int pairs = H * half;
  for (int k = threadIdx.x; k < pairs; k += blockDim.x) {
    const int h = k / half;
    const int i = k - h * half;
    const int64_t p = base + static_cast<int64_t>(h) * D + i;
    const float x1 = to_f32(x[p]), x2 = to_f32(x[p + half]);
    y[p] = from_f32<T>(x1 * c[i] - x2 * s[i]);
    y[p + half] = from_f32<T>(x2 * c[i] + x1 * s[i]);
  }
  const int rot = 2 * half;
  if (rot < D && x != y) {
    const int pass = D - rot;
    for (int k = threadIdx.x; k < H * pass; k += blockDim.x) {
      const int h = k / pass;
      const int64_t p = base + static_cast<int64_t>(h) * D + rot + (k - h * pass);
      y[p] = x[p];
    }
  }
}

}  // namespace

template <typename T>
void rope_apply(cudaStream_t stream, const T* x, const int32_t* positions, const float* inv_freq, int64_t B,
                int64_t T_, int64_t H, int64_t D, int64_t rotary_dim, bool inverse, T* y) {
  const int64_t rows = B * T_;
  if (rows <= 0 || H <= 0 || D <= 0) return;
  const int64_t half = rotary_dim / 2;
  const size_t smem = static_cast<size_t>(2 * half) * sizeof(float);
  rope_kernel<T><<<static_cast<unsigned>(rows), kRopeThreads, smem, stream>>>(
      x, positions, inv_freq, static_cast<int>(H), static_cast<int>(D), static_cast<int>(half), inverse, y);
  CUDA_CHECK_LAUNCH();
}

template void rope_apply<float>(cudaStream_t, const float*, const int32_t*, const float*, int64_t, int64_t,
                                int64_t, int64_t, int64_t, bool, float*);
template void rope_apply<__nv_bfloat16>(cudaStream_t, const __nv_bfloat16*, const int32_t*, const float*,
                                        int64_t, int64_t, int64_t, int64_t, int64_t, bool, __nv_bfloat16*);

}  // namespace engine::cuda
