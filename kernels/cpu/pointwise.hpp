// Pointwise math for the op table's ABI 1.1 entries: unary functions and their derivatives, binary functions
// and where over broadcast operands, the sum that takes a broadcast's gradient back to an operand's shape,
// and the multi-tensor in-place updates of optimizers. The vocabulary (UnaryOp, BinaryOp, Broadcast,
// ForeachArgs) is kernels/cpu/pointwise_ops.hpp.
//
// Layout: contiguous row-major outputs; broadcast operands are read through Broadcast's per-dim strides
// (0 along a broadcast dim), walked as an odometer whose innermost dim runs as a plain strided loop. Work is
// split over output elements in fixed contiguous ranges by the pool; reduce_to sums each output element over
// its reduced index range in ascending order, in double, so results do not depend on the thread count.
//
// The scalar definitions (unary_value, binary_value, foreach_value) are inline here: they are the reference
// the CUDA kernels (kernels/cuda/pointwise.cu) are tested against.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/pointwise_ops.hpp"

namespace engine::cpu {

class ThreadPool;

template <typename T>
inline T sign_value(T x) {
  return x > T(0) ? T(1) : x < T(0) ? T(-1) : x == T(0) ? T(0) : x;  // NaN stays NaN
}

template <typename T>
inline T unary_value(UnaryOp op, T x, T p0, T p1) {
  switch (op) {
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return T(1) / std::sqrt(x);
    case UnaryOp::Abs: return std::fabs(x);
    case UnaryOp::Sign: return sign_value(x);
    case UnaryOp::PowScalar: return std::pow(x, p0);
    case UnaryOp::Clamp: return x != x ? x : std::min(std::max(x, p0), p1);  // NaN stays NaN
  }
  return x;
}

// dx for dy, x and y = f(x)
template <typename T>
inline T unary_grad_value(UnaryOp op, T dy, T x, T y, T p0, T p1) {
  switch (op) {
    case UnaryOp::Sqrt: return dy * T(0.5) / y;
    case UnaryOp::Rsqrt: return T(-0.5) * dy * (y * y * y);
    case UnaryOp::Abs: return dy * sign_value(x);
    case UnaryOp::Sign: return T(0);
    case UnaryOp::PowScalar: return p0 == T(0) ? T(0) : dy * p0 * std::pow(x, p0 - T(1));
    case UnaryOp::Clamp: return x >= p0 && x <= p1 ? dy : T(0);
  }
  return T(0);
}

template <typename T>
inline T binary_value(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Maximum: return a != a || b != b ? a + b : (a > b ? a : b);  // NaN propagates
    case BinaryOp::Minimum: return a != a || b != b ? a + b : (a < b ? a : b);
    case BinaryOp::MaxSelect: return a > b ? T(1) : a == b ? T(0.5) : T(0);
    case BinaryOp::MinSelect: return a < b ? T(1) : a == b ? T(0.5) : T(0);
  }
  return a;
}

// The new value of one dst element (y ignored where the op does not read it).
template <typename T>
inline T foreach_value(const ForeachArgs& f, T dst, T x, T y) {
  const T a = T(f.a), b = T(f.b), c = T(f.c), d = T(f.d), eps = T(f.eps);
  switch (f.op) {
    case ForeachOp::Axpby: return a * dst + b * x;
    case ForeachOp::Addcmul: return a * dst + c * (x * y);
    case ForeachOp::Addcdiv: {
      const T dy = d * y;
      return a * dst + c * (x / ((f.sqrt_y ? std::sqrt(dy) : dy) + eps));
    }
    case ForeachOp::AddSign: return a * dst + c * sign_value(b * x + d * y);
  }
  return dst;
}

// y = f(x)   (n)
template <typename T>
void unary(ThreadPool& pool, UnaryOp op, const T* x, T p0, T p1, T* y, int64_t n);
// dx = dy f'(x)   (n)
template <typename T>
void unary_backward(ThreadPool& pool, UnaryOp op, const T* dy, const T* x, const T* y, T p0, T p1, T* dx,
                    int64_t n);
// out (bc.shape) = a op b, a and b read by bc.stride[0], bc.stride[1]
template <typename T>
void binary(ThreadPool& pool, BinaryOp op, const Broadcast& bc, const T* a, const T* b, T* out);
// out (bc.shape) = cond != 0 ? a : b, read by bc.stride[0..2]
template <typename T>
void where(ThreadPool& pool, const Broadcast& bc, const T* cond, const T* a, const T* b, T* out);
// out (out_numel, contiguous) = sums of x (contiguous, bc.shape): x's element at index i adds to out's
// element at sum_d i_d bc.stride[0][d]; bc.stride[0] is out's contiguous strides with 0 along summed dims.
template <typename T>
void reduce_to(ThreadPool& pool, const Broadcast& bc, const T* x, T* out, int64_t out_numel);
// dst[i] = foreach_value(args, dst[i], x[i], y ? y[i] : 0)   (n)
template <typename T>
void foreach_update(ThreadPool& pool, const ForeachArgs& args, T* dst, const T* x, const T* y, int64_t n);

}  // namespace engine::cpu
