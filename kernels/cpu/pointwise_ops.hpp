// The vocabulary of the pointwise kernels (kernels/cpu/pointwise.cpp, kernels/cuda/pointwise.cu) and of the
// kernel table entries that call them (engine/runtime/kernel_table.hpp): which function, the broadcast layout
// of the operands, and the multi-tensor updates. Plain data, no dependencies, so nvcc includes it too.
#pragma once

#include <cstdint>

namespace engine::cpu {

constexpr int kBroadcastMaxDims = 8;  // == ENG_MAX_DIMS

// The pointwise functions of `unary` / `unary_backward` (p0, p1: the op's scalars).
enum class UnaryOp : uint32_t {
  Sqrt,       // sqrt(x)
  Rsqrt,      // 1 / sqrt(x)
  Abs,        // |x|
  Sign,       // -1, 0, +1
  PowScalar,  // x ^ p0
  Clamp,      // min(max(x, p0), p1)
};

// The functions of `binary`. MaxSelect / MinSelect are maximum's / minimum's share of the gradient that goes to
// a: 1 where a wins, 0.5 at a tie, 0 where b wins.
enum class BinaryOp : uint32_t { Add, Mul, Div, Maximum, Minimum, MaxSelect, MinSelect };

// Up to three operands broadcast to one contiguous output of shape[0..ndim): operand k's element for output
// index (i_0, ..., i_{ndim-1}) is at sum_d i_d * stride[k][d] (stride 0 along a broadcast dim). Builders
// (engine/runtime/ops/broadcast.hpp) merge dims that are contiguous for every operand, so ndim is often 1.
struct Broadcast {
  int ndim = 0;
  int64_t shape[kBroadcastMaxDims] = {};
  int64_t stride[3][kBroadcastMaxDims] = {};
  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= shape[d];
    return n;
  }
};

// The multi-tensor in-place updates of the op table's foreach_ entries.
//   Axpby:   dst = a dst + b x
//   Addcmul: dst = a dst + c x y
//   Addcdiv: dst = a dst + c x / (g(d y) + eps),  g = sqrt when sqrt_y, else the identity
//   AddSign: dst = a dst + c sign(b x + d y)      (y undefined: sign(b x))
enum class ForeachOp : uint32_t { Axpby, Addcmul, Addcdiv, AddSign };
struct ForeachArgs {
  ForeachOp op = ForeachOp::Axpby;
  double a = 1.0, b = 0.0, c = 0.0, d = 0.0, eps = 0.0;
  bool sqrt_y = false;
};

}  // namespace engine::cpu
