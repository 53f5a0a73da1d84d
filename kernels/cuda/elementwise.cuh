// Elementwise kernels on the GPU: fill, axpby (gradient accumulation across dtypes), broadcast add / mul,
// scale, and a fill from a scalar that lives on the device. Mirrors kernels/cpu/elementwise.hpp.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cast.cuh"

namespace engine::cuda {

// dst[i] = value, i < n, any ElemType; value converted as copy_convert converts an f64 (bf16/f16 through f32,
// round to nearest even; integers truncate toward zero).
void fill(cudaStream_t stream, void* dst, ElemType dtype, double value, int64_t n);

// dst[i] = a * dst[i] + b * src[i], i < n. dst: F32, F64 or BF16; src: F32, F64, BF16 or F16 (f32 grad +=
// bf16 grad is axpby(F32, 1, BF16, 1)). Math in f64 when dst is F64, else f32, each product and the sum
// rounded separately (no fused multiply-add), as the CPU reference computes it; bf16 dst is rounded once at
// the end. a == 0 does not read dst (dst = b * src, so an uninitialised dst is fine), unlike the CPU's 0 *
// NaN.
void axpby(cudaStream_t stream, void* dst, ElemType dst_dtype, double a, const void* src, ElemType src_dtype,
           double b, int64_t n);

// out[i, j] = a[i, j] + b[j]        a, out: (outer, inner), b: (inner); T: float or __nv_bfloat16
template <typename T>
void add_broadcast(cudaStream_t stream, const T* a, const T* b, T* out, int64_t outer, int64_t inner);
// out[i, j] = a[i, j] * b[j]
template <typename T>
void mul_broadcast(cudaStream_t stream, const T* a, const T* b, T* out, int64_t outer, int64_t inner);
// out[i] = s * x[i]      (n); out may be x
template <typename T>
void scale(cudaStream_t stream, const T* x, float s, T* out, int64_t n);
// dst[i] = multiplier * *scalar     (n); scalar: one float on the device, read by the kernel (no host sync)
template <typename T>
void fill_from_scalar(cudaStream_t stream, T* dst, int64_t n, const float* scalar, float multiplier);

}  // namespace engine::cuda
