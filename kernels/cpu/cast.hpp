// Cast and copy: dtype conversion of contiguous buffers (bf16/f16 storage <-> f32 compute, f32 <-> f64) and
// the strided-to-contiguous copy behind contiguous().
//
// bf16 -> f32 is exact (a 16-bit shift); f32 -> bf16 and f32 -> f16 round to nearest even
// (engine/core/float16.hpp). The strided copy walks the destination in row-major order; one chunk = a range
// of rows of the last dimension, so the innermost loop is a fixed-stride gather. Pure data movement:
// deterministic for any thread count.
#pragma once

#include <cstdint>

namespace engine::cpu {

class ThreadPool;

// dst[i] = convert(src[i]) for i < n. Src/Dst in {float, double, Bf16, F16} where Bf16/F16 wrap raw uint16_t.
struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};
template <typename Src, typename Dst>
void convert(ThreadPool& pool, const Src* src, Dst* dst, int64_t n);

// dst (contiguous, shape) = src (strides in elements, ndim <= 8), elements of `elem_bytes` bytes (1, 2, 4 or
// 8).
void copy_strided(ThreadPool& pool, const void* src, const int64_t* shape, const int64_t* strides, int ndim,
                  void* dst, int elem_bytes);

}  // namespace engine::cpu
