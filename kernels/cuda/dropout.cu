// Dropout with a counter-based mask, the GPU twin of kernels/cpu/dropout.cpp.
//
//   r = splitmix64(seed ^ splitmix64(i)),  u = (r >> 11) * 2^-53 in [0, 1),  keep = u >= p,
//   y[i] = keep ? x[i] * (1 / (1 - p)) : 0
//
// The mask is a pure function of (seed, index): nothing is stored, activation checkpointing's replay and the
// backward regenerate it, and the CPU (engine::cpu::dropout_keep) gives the same decision for every element,
// since both sides evaluate exactly these integer operations and one exactly rounded double comparison
// (engine::splitmix64 from engine/core/splitmix64.hpp is the one definition both use). The keep scale is
// rounded to float once on the host as the CPU's static_cast<float> does, so f32 outputs are identical too.
//
// Layout: n contiguous elements. Shape: one element per thread, grid-stride, 64-bit indices; the two 64-bit
// multiply chains per element are far below the memory time.
#include "engine/core/splitmix64.hpp"  // header-only, host and device, no engine dependencies
#include "kernels/cuda/dropout.cuh"
#include "kernels/cuda/launch.cuh"

namespace engine::cuda {

namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void dropout_kernel(const T* x, T* y, int64_t n, double p, uint64_t seed, float keep_scale) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint64_t r = engine::splitmix64(seed ^ engine::splitmix64(static_cast<uint64_t>(i)));
    const double u = static_cast<double>(r >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
    y[i] = u >= p ? detail::from_f32<T>(detail::to_f32(x[i]) * keep_scale) : detail::from_f32<T>(0.0f);
  }
}

}  // namespace

template <typename T>
void dropout_apply(cudaStream_t stream, const T* x, T* y, int64_t n, double p, uint64_t seed) {
  ENGINE_CUDA_REQUIRE(n >= 0, "dropout_apply: negative element count");
  ENGINE_CUDA_REQUIRE(p >= 0.0 && p <= 1.0, "dropout_apply: p must be in [0, 1]");
  if (n == 0) return;
  const float keep_scale = static_cast<float>(1.0 / (1.0 - p));
  dropout_kernel<T><<<detail::grid_blocks(n, kThreads), kThreads, 0, stream>>>(x, y, n, p, seed, keep_scale);
  CUDA_CHECK_LAUNCH();
}

template void dropout_apply<float>(cudaStream_t, const float*, float*, int64_t, double, uint64_t);
template void dropout_apply<__nv_bfloat16>(cudaStream_t, const __nv_bfloat16*, __nv_bfloat16*, int64_t,
                                           double, uint64_t);

}  // namespace engine::cuda
