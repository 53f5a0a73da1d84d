// What every built-in op does with its inputs before calling a kernel: check that they live on the CPU, pick
// the compute type (f64 when the floating inputs are f64, f32 otherwise: bf16/f16/f32 compute in f32), and
// make contiguous copies in that type only where an input is not already one. Internal to engine/runtime/ops.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "engine/runtime/tensor.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace engine::rt::ops::detail {

// The CPU thread pool of t's device; throws naming `op` when t is not on the CPU.
cpu::ThreadPool& cpu_pool(const Tensor& t, const char* op);

// The compute type of an op's floating inputs (undefined ones skipped): ENG_F64 when all are f64, ENG_F32
// when none is; throws when they mix f64 with other types or when one is not floating.
DType compute_dtype(const char* op, std::initializer_list<Tensor> floating);

// t as a contiguous tensor of dtype ct (t itself when it already is one).
Tensor as_compute(const Tensor& t, DType ct);

// An index input (ids, labels, positions, segments) as contiguous int32; throws for non-integer dtypes.
Tensor as_index(const Tensor& t, const char* op, const char* what);

// Contiguous copy through the pool (any dtype); t itself when already contiguous.
Tensor contiguous(const Tensor& t);

// Converts t (any float dtype, contiguous or not) into a new contiguous tensor of `dtype`.
Tensor convert(const Tensor& t, DType dtype);

// What a node keeps of an input for backward: the converted compute copy when the input already had the
// compute type (no extra bytes), else the original (bf16/f16 storage, e.g. a frozen base weight: keeping an
// f32 copy until backward would double its memory); backward converts it again with as_compute.
Tensor saved_input(const Tensor& original, const Tensor& converted);

// Calls f(float{}) or f(double{}) for the compute type.
template <typename F>
decltype(auto) dispatch(DType ct, F&& f) {
  if (ct == ENG_F64) return f(double{});
  return f(float{});
}

// Throws unless t has rank `ndim` (naming op and input).
void expect_rank(const Tensor& t, int ndim, const char* op, const char* what);

}  // namespace engine::rt::ops::detail
