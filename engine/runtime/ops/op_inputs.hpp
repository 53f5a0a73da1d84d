// What every built-in op does with its inputs before calling its device's kernel table: find the table (all
// inputs on one device), pick the compute type by the device's policy (KernelTable::compute_dtype), check
// that the device runs the kernel for it, and make contiguous copies in that type only where an input is not
// already one. Internal to engine/runtime/ops.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "engine/runtime/kernel_table.hpp"
#include "engine/runtime/tensor.hpp"

namespace engine::rt::ops::detail {

// The kernel table of t's device; throws naming `op` when another defined input lives on another device.
const KernelTable& kernels_of(const char* op, std::initializer_list<Tensor> inputs);

// The compute type of an op's floating inputs (undefined ones skipped) by the device's policy; throws when
// one is not floating or they cannot be combined.
DType compute_dtype(const KernelTable& kt, const char* op, std::initializer_list<Tensor> floating);

// Throws naming `op` unless the device runs kernel `k` in compute type ct.
void require(const KernelTable& kt, Kernel k, DType ct, const char* op);

// t as a contiguous tensor of dtype ct (t itself when it already is one).
Tensor as_compute(const Tensor& t, DType ct);

// An index input (ids, labels, positions, segments) as contiguous int32; throws for non-integer dtypes.
Tensor as_index(const Tensor& t, const char* op, const char* what);

// Contiguous copy through the device's copy kernel (any dtype); t itself when already contiguous.
Tensor contiguous(const Tensor& t);

// Converts t (any dtype, contiguous or not) into a new contiguous tensor of `dtype` (t when it already is
// one).
Tensor convert(const Tensor& t, DType dtype);

// What a node keeps of an input for backward: the converted compute copy when the input already had the
// compute type (no extra bytes), else the original (bf16/f16 storage, e.g. a frozen base weight: keeping an
// f32 copy until backward would double its memory); backward converts it again with as_compute.
Tensor saved_input(const Tensor& original, const Tensor& converted);

// Throws unless t has rank `ndim` (naming op and input).
void expect_rank(const Tensor& t, int ndim, const char* op, const char* what);

}  // namespace engine::rt::ops::detail
