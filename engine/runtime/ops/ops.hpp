// The built-in ops as Node factories: the contract between the op implementations (engine/runtime/ops/*.cpp,
// calling kernels/cpu and later kernels/cuda) and the autograd tape (engine/runtime/autograd.hpp), which runs
// node->forward() and records the node when gradients are enabled.
//
// Conventions for every node:
//  - Inputs are listed in the order given here; outputs are one tensor unless stated.
//  - Floating inputs may be f32, bf16, f16 or f64. On the CPU, bf16/f16 are converted to f32 and outputs are
//    f32; f64 inputs give f64 outputs (used by the finite-difference gradient checks). All floating inputs of
//    one op must then be of one compute type (f32 or f64) after that conversion.
//  - Index inputs (ids, labels, position_ids, segment_ids) are int32 (int64 accepted) and get no gradient.
//  - Inputs may be non-contiguous; nodes make what they need contiguous.
#pragma once

#include <cstdint>
#include <memory>

#include <vector>

#include "engine/abi/engine.h"
#include "engine/runtime/kernel_table.hpp"
#include "engine/runtime/node.hpp"

namespace engine::rt {

struct KvCache;  // engine/runtime/kv_cache.hpp

namespace ops {

// inputs {table (V,C), ids (...)} -> (..., C)
std::unique_ptr<Node> make_embedding();
// inputs {x (..., in), weight (out, in), bias (out) or undefined} -> (..., out) = x W^T + b
std::unique_ptr<Node> make_linear();
// inputs {a (..., M, K) or (..., K, M) if trans_a, b (..., K, N) or (..., N, K) if trans_b} -> (..., M, N);
// leading (batch) dims equal, or b without batch dims (broadcast)
std::unique_ptr<Node> make_matmul(bool trans_a, bool trans_b);
// inputs {a, b} broadcast numpy-style (aligned at the last dim, each dim pair equal or one of them 1) -> the
// broadcast shape. Until ABI 1.1 b had to equal a's trailing dims; those pairs give the same result.
std::unique_ptr<Node> make_add();
std::unique_ptr<Node> make_mul();
// inputs {a, b} broadcast -> a / b, max(a, b), min(a, b) (a tie splits the gradient evenly); op one of Add,
// Mul, Div, Maximum, Minimum
std::unique_ptr<Node> make_binary(BinaryOp op);
// inputs {cond, a, b} broadcast together -> cond != 0 ? a : b; cond floating or integer, gets no gradient
std::unique_ptr<Node> make_where();
// inputs {x} -> sqrt, rsqrt, abs, sign (gradient 0), x ^ p0 (PowScalar), min(max(x, p0), p1) (Clamp, p0 <= p1)
std::unique_ptr<Node> make_unary(UnaryOp op, double p0 = 0.0, double p1 = 0.0);
// inputs {x} -> s * x
std::unique_ptr<Node> make_scale(double s);
// inputs {x (..., C), weight (C)} -> x * rsqrt(mean(x^2) + eps) * weight
std::unique_ptr<Node> make_rms_norm(double eps);
// inputs {x (B,T,H,D), position_ids (B,T)} -> rotated x (HF rotate_half on the first rotary_dim dims)
std::unique_ptr<Node> make_rope(const eng_rope_config& cfg);
// inputs {q (B,T,Hq,D), k (B,T,Hkv,D), v (B,T,Hkv,D), segment_ids (B,T) or undefined} -> (B,T,Hq,D)
// causal; a token attends to earlier tokens of the same segment only
std::unique_ptr<Node> make_attention(double softmax_scale);
// Generation with a cache (never recorded): appends k, v at the cache's length for `layer`, attends q to all
// cached positions (causal within the new tokens). q (B,T,Hq,D) -> (B,T,Hq,D).
Tensor attention_with_cache(const Tensor& q, const Tensor& k, const Tensor& v, double softmax_scale, KvCache& cache,
                            int layer);
std::unique_ptr<Node> make_silu();
// inputs {gate, up} -> silu(gate) * up
std::unique_ptr<Node> make_swiglu();
// swiglu backwards (process-wide) that wrote the gradients over the saved gate and up (tests).
int64_t swiglu_in_place_backwards();
// inputs {x} -> softmax over the last dim
std::unique_ptr<Node> make_softmax();
// inputs {logits (N,V), labels (N)} -> () f32: scale * sum over labels != ignore_index of -log softmax(logits)[label]
std::unique_ptr<Node> make_cross_entropy(int64_t ignore_index, double scale);
// inputs {hidden (N,C), weight (V,C), labels (N)} -> () f32, the same loss of hidden W^T computed in chunks of
// rows so that the (N,V) logits never exist at once; backward recomputes each chunk's logits
std::unique_ptr<Node> make_linear_cross_entropy(int64_t ignore_index, double scale);
// inputs {x} -> x * mask / (1-p); mask from a counter-based generator keyed by (seed, element index)
std::unique_ptr<Node> make_dropout(double p, uint64_t seed);
// inputs {x} -> x converted to dtype (gradient converted back)
std::unique_ptr<Node> make_cast(eng_dtype dtype);
// inputs {x} -> view with a new shape (one -1 inferred)
std::unique_ptr<Node> make_reshape(int ndim, const int64_t* shape);
std::unique_ptr<Node> make_transpose(int dim0, int dim1);
// [start, end) along dim
std::unique_ptr<Node> make_slice(int dim, int64_t start, int64_t end);
// inputs {x0, x1, ...} -> concatenation along dim
std::unique_ptr<Node> make_concat(int dim);
std::unique_ptr<Node> make_contiguous();
// inputs {x} -> () sum of all elements (f32, or f64 for f64 input)
std::unique_ptr<Node> make_sum();

// In-place updates, never recorded (optimizers). dst contiguous.
void axpby_(Tensor& dst, double a, const Tensor& src, double b);  // dst = a*dst + b*src
void copy_(Tensor& dst, const Tensor& src);                       // dst = src (converting dtype)
void fill_(Tensor& dst, double value);
// The multi-tensor form (ForeachArgs in kernel_table.hpp says what each op computes): dst[i] contiguous, all of one
// floating dtype the device updates in (f32 or f64 on the CPU, f32 or bf16 on CUDA), x[i] / y[i] of dst[i]'s shape in any floating dtype and layout (y
// empty for Axpby, and optional for AddSign). Every list is checked before anything is updated; a
// mismatched list length or shape is refused naming `op`, the index and both shapes.
void foreach_update(const char* op, const ForeachArgs& args, const std::vector<Tensor>& dst,
                    const std::vector<Tensor>& x, const std::vector<Tensor>& y);

}  // namespace ops
}  // namespace engine::rt
