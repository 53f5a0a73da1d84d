// Copy and convert on the GPU: any dtype pair among f32, f64, bf16, f16, i32, i64, u8, any shape up to 8
// dimensions, strides in elements on both sides. Mirrors kernels/cpu/cast.hpp (convert, copy_strided).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace engine::cuda {

// Element types of the copy/convert/fill launchers. The values are the ABI's eng_dtype values
// (sdk/include/engine/abi/engine.h: ENG_F32 = 0 ... ENG_U8 = 6), so a table converts with a static_cast;
// tests/cuda/cast_test.cpp checks that they agree.
enum class ElemType : uint32_t { F32 = 0, BF16 = 1, F16 = 2, F64 = 3, I32 = 4, I64 = 5, U8 = 6 };

// Bytes per element; 0 for a value outside the enum.
inline int elem_size(ElemType t) {
  switch (t) {
    case ElemType::F32:
    case ElemType::I32:
      return 4;
    case ElemType::BF16:
    case ElemType::F16:
      return 2;
    case ElemType::F64:
    case ElemType::I64:
      return 8;
    case ElemType::U8:
      return 1;
  }
  return 0;
}

// dst[idx * dst_strides] = convert(src[idx * src_strides]) for every index idx of `shape` (ndim 0..8; ndim 0
// is one element). Strides are in elements and may be null for row-major contiguous; they may be zero or
// negative on the source side (broadcast, flips), and the destination must not map two indices to one
// element. src and dst must not overlap. Conversions: bf16/f16 <-> f32 exactly as engine/core/float16.hpp
// (round to nearest even), f64 -> bf16/f16 through f32 as the CPU does, float -> integer truncates toward
// zero (out of the integer's range or NaN: whatever the device's conversion gives, as C++ leaves it
// undefined), integer -> float rounds to nearest.
// Same dtype and contiguous on both sides: one cudaMemcpyAsync. Enqueued on `stream`; no synchronisation.
void copy_convert(cudaStream_t stream, const void* src, ElemType src_dtype, const int64_t* shape,
                  const int64_t* src_strides, int ndim, void* dst, ElemType dst_dtype,
                  const int64_t* dst_strides);

// The contiguous case: dst[i] = convert(src[i]) for i < n.
void convert(cudaStream_t stream, const void* src, ElemType src_dtype, void* dst, ElemType dst_dtype,
             int64_t n);

}  // namespace engine::cuda
