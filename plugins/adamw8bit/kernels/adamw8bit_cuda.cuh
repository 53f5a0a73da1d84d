// The adamw8bit plugin's multi-tensor 8-bit blockwise AdamW step on the GPU (adamw8bit_cuda.cu). Host-callable,
// plain C++ (only the CUDA runtime headers); the kernels live in the .cu. Built only with the CUDA backend.
// Returns the cudaError_t of the first failure (cudaErrorInvalidValue for a bad argument, before any launch).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace adamw8bit::cuda {

enum class GradType : int32_t { F32 = 0, BF16 = 1 };

// One parameter: contiguous device arrays of n elements. state_8bit: s1, s2 are uint8 codes and a1, a2 the
// ceil(n / 256) fp32 absmax values; otherwise s1, s2 are fp32 states and a1, a2 unused. The coefficients are
// adamw8bit::coefficients() of this tensor (blockwise8.hpp), computed on the host.
struct TensorArgs {
  float* p = nullptr;
  const void* g = nullptr;
  void* s1 = nullptr;
  void* s2 = nullptr;
  float* a1 = nullptr;
  float* a2 = nullptr;
  int64_t n = 0;
  GradType g_type = GradType::F32;
  int32_t state_8bit = 1;
  int32_t decayed = 0;
  float decay = 1.0f;
  float step_size = 0.0f;  // -lr / (1 - b1^t)
  float bc2_sqrt = 1.0f;
};

struct SharedArgs {
  float b1 = 0.9f;
  float one_minus_b1 = 0.1f;
  float b2 = 0.999f;
  float one_minus_b2 = 0.001f;
  float eps = 1e-8f;
  float grad_scale = 1.0f;
  int32_t scaled = 0;
  const float* map1 = nullptr;  // host pointers to the 256 codes of the signed and unsigned maps (copied into
  const float* map2 = nullptr;  // the launch's arguments)
};

// Steps `count` tensors on `stream`, asynchronously, kMaxTensorsPerLaunch per launch.
cudaError_t step(cudaStream_t stream, const TensorArgs* tensors, int64_t count, const SharedArgs& shared);

inline constexpr int kMaxTensorsPerLaunch = 16;

}  // namespace adamw8bit::cuda
