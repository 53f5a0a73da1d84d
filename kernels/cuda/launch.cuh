// What the launchers in kernels/cuda share (nvcc only, not a public header): argument checks that throw
// engine::Error, grid sizes for grid-stride loops, and fp32 loads and stores of the storage types.
//
// The 16-bit conversions on raw bits mirror engine/core/float16.hpp operation for operation (round to nearest
// even, NaN kept quiet with its sign and top payload bits), so a conversion on the GPU gives the same bits as
// the CPU reference for every input, NaN and subnormals included. They are __host__ __device__ so that a
// launcher can convert a fill value on the host with the same rule.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "kernels/cuda/cuda_check.cuh"

// A launcher's precondition: throws engine::Error "CUDA error cudaErrorInvalidValue (...) in <what> at
// file:line" when it does not hold, before anything is launched.
#define ENGINE_CUDA_REQUIRE(cond, what)                                                             \
  do {                                                                                              \
    if (!(cond)) ::engine::cuda::throw_cuda_error(cudaErrorInvalidValue, what, __FILE__, __LINE__); \
  } while (0)

namespace engine::cuda::detail {

// Blocks for a grid-stride loop over `work` items with `threads` per block: enough to fill an H200 many times
// over, capped so that the grid stays far inside gridDim.x's limit. The cap is a constant, not read from the
// device, so the split of work never depends on the GPU.
inline unsigned grid_blocks(int64_t work, int threads, int64_t max_blocks = int64_t{1} << 16) {
  int64_t blocks = (work + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > max_blocks) blocks = max_blocks;
  return static_cast<unsigned>(blocks);
}

__host__ __device__ inline uint32_t f32_bits(float v) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(v);
#else
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
#endif
}
__host__ __device__ inline float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
#endif
}

// fp32 -> bf16 bits, round to nearest even (float16.hpp: f32_to_bf16_bits).
__host__ __device__ inline uint16_t f32_to_bf16_bits(float value) {
  const uint32_t x = f32_bits(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);
  const uint32_t rounding_bias = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding_bias) >> 16);
}
__host__ __device__ inline float bf16_bits_to_f32(uint16_t bits) {
  return bits_f32(static_cast<uint32_t>(bits) << 16);
}

// fp32 -> fp16 bits, round to nearest even (float16.hpp: f32_to_f16_bits).
__host__ __device__ inline uint16_t f32_to_f16_bits(float value) {
  const uint32_t w = f32_bits(value);
  const uint16_t sign = static_cast<uint16_t>((w >> 16) & 0x8000u);
  const uint32_t x = w & 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x03ffu));
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (x >= 0x38800000u) {
    const uint32_t rebiased = x - 0x38000000u;
    const uint32_t rounding_bias = 0x0fffu + ((x >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rebiased + rounding_bias) >> 13));
  }
  if (x <= 0x33000000u) return sign;
  const uint32_t exponent = x >> 23;
  const uint32_t mantissa = (x & 0x007fffffu) | 0x00800000u;
  const uint32_t shift = 126u - exponent;
  uint32_t result = mantissa >> shift;
  const uint32_t remainder = mantissa & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (remainder > half || (remainder == half && (result & 1u))) ++result;
  return static_cast<uint16_t>(sign | result);
}
// fp16 bits -> fp32, exact (float16.hpp: f16_bits_to_f32).
__host__ __device__ inline float f16_bits_to_f32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x03ffu;
  if (exponent == 0x1fu) {
    const uint32_t quiet = mantissa != 0 ? 0x00400000u : 0u;
    return bits_f32(sign | 0x7f800000u | quiet | (mantissa << 13));
  }
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return bits_f32(sign | f32_bits(magnitude));
  }
  return bits_f32(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// fp32 view of the storage types the kernels are templated on; all math is fp32.
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
  return __float2bfloat16_rn(v);  // round to nearest even, as f32_to_bf16_bits for every non-NaN value
}

}  // namespace engine::cuda::detail
