// Pointwise math on the GPU for the op table's ABI 1.1 entries: unary functions and their derivatives,
// binary functions and where over broadcast operands, the sum of a broadcast's gradient back to an operand's
// shape, and the multi-tensor in-place updates of optimizers. The GPU twin of kernels/cpu/pointwise.hpp (whose
// inline scalar definitions are the reference); the vocabulary is kernels/cpu/pointwise_ops.hpp.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/pointwise_ops.hpp"

namespace engine::cuda {

using cpu::BinaryOp;
using cpu::Broadcast;
using cpu::ForeachArgs;
using cpu::ForeachOp;
using cpu::UnaryOp;

// T: float or __nv_bfloat16; math in fp32, one rounding to T at the store.
// y = f(x)   (n)
template <typename T>
void unary(cudaStream_t stream, UnaryOp op, const T* x, float p0, float p1, T* y, int64_t n);
// dx = dy f'(x), y = f(x)   (n)
template <typename T>
void unary_backward(cudaStream_t stream, UnaryOp op, const T* dy, const T* x, const T* y, float p0, float p1,
                    T* dx, int64_t n);
// out (bc.shape, contiguous) = a op b, a and b read by bc.stride[0], bc.stride[1]
template <typename T>
void binary(cudaStream_t stream, BinaryOp op, const Broadcast& bc, const T* a, const T* b, T* out);
// out (bc.shape) = cond != 0 ? a : b, read by bc.stride[0..2]
template <typename T>
void where(cudaStream_t stream, const Broadcast& bc, const T* cond, const T* a, const T* b, T* out);
// out (out_numel) = sums of x (contiguous, bc.shape) into out's element sum_d i_d bc.stride[0][d]; fp32
// accumulation in a fixed order per output element (bitwise repeatable).
template <typename T>
void reduce_to(cudaStream_t stream, const Broadcast& bc, const T* x, T* out, int64_t out_numel);
// For each i < n: dst[i][j] = foreach_value(args, dst[i][j], x[i][j], y ? y[i][j] : 0), j < numel[i]. The
// arrays are host memory holding device pointers (y may be nullptr, or hold nullptr entries); tensors go in
// batches of up to kForeachBatch per launch, a block per 2048-element chunk of one tensor.
constexpr int kForeachBatch = 64;
template <typename T>
void foreach_update(cudaStream_t stream, const ForeachArgs& args, int64_t n, T* const* dst, const T* const* x,
                    const T* const* y, const int64_t* numel);

}  // namespace engine::cuda
