// The adamw plugin's fused multi-tensor AdamW step on the GPU (adamw_cuda.cu). Host-callable, plain C++: a
// .cpp may include this header (it needs only the CUDA runtime headers), the kernels live in the .cu.
//
// Built only when the CUDA backend is (ENGINE_HAVE_CUDA). The plugin is built against the SDK only, so the
// launcher does not throw engine errors: it returns the cudaError_t of the first failure (a bad argument is
// cudaErrorInvalidValue, before anything is launched) and the caller turns it into its own error.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace adamw::cuda {

// The storage type of a gradient; each tensor of a launch may have its own.
enum class GradType : int32_t { F32 = 0, BF16 = 1 };

// One parameter to step: contiguous device arrays of n elements. p, m, v are f32 and updated in place; g is
// f32 or bf16 (GradType) and only read. Any alignment is accepted: float4 (bf16: 4 x 16-bit) loads are used
// where all four arrays allow them, scalar ones otherwise. The coefficients are adamw::coefficients() of
// this tensor's lr, weight decay and step (adamw_update.hpp), computed on the host.
struct TensorArgs {
  float* p = nullptr;       // (n) f32 parameter (the fp32 master)
  float* m = nullptr;       // (n) f32 exp_avg
  float* v = nullptr;       // (n) f32 exp_avg_sq
  const void* g = nullptr;  // (n) gradient, GradType
  int64_t n = 0;            // elements; 0 is allowed (nothing to do)
  GradType g_type = GradType::F32;
  int32_t decayed = 0;     // nonzero: p *= decay first (weight_decay != 0)
  float decay = 1.0f;      // 1 - lr * weight_decay
  float step_size = 0.0f;  // lr / (1 - beta1^t)
  float bc2_sqrt = 1.0f;   // sqrt(1 - beta2^t)
};

// What every tensor of a step shares (the optimizer's betas and eps, the step's gradient scale).
struct SharedArgs {
  float w = 0.1f;               // 1 - beta1, the lerp weight of exp_avg
  float b2 = 0.999f;            // beta2
  float one_minus_b2 = 0.001f;  // 1 - beta2
  float eps = 1e-8f;
  float grad_scale = 1.0f;
  int32_t scaled = 0;  // nonzero: g *= grad_scale first (grad_scale != 1)
};

// Steps `count` tensors with as few launches as the kernel-argument limit allows (kMaxTensorsPerLaunch per
// launch), all on `stream`, asynchronously: no synchronisation, no allocation, the descriptors travel in the
// kernel arguments. The tensors must not overlap one another. Returns cudaSuccess or the first error
// (cudaErrorInvalidValue for count < 0, tensors == nullptr with count > 0, n < 0, a null pointer with n > 0,
// or an unknown GradType).
cudaError_t fused_step(cudaStream_t stream, const TensorArgs* tensors, int64_t count,
                       const SharedArgs& shared);

// Tensors per launch (the descriptors of one launch fit in the classic 4 KiB of kernel parameters).
inline constexpr int kMaxTensorsPerLaunch = 48;

}  // namespace adamw::cuda
