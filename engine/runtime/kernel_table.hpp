// KernelTable: the arithmetic of the built-in ops for one kind of device, as a struct of function pointers
// (ggml-backend style). Each Device owns one (Device::kernels()); op nodes (engine/runtime/ops/) keep the
// shape checks, what they save for backward and how gradients combine, and call the table for every byte they
// compute, so an op is written once and runs on the CPU and on CUDA. The tables themselves live with their
// devices: engine/runtime/devices/cpu/cpu_kernel_table.cpp binds kernels/cpu, engine/runtime/devices/cuda/
// binds kernels/cuda.
//
// Contract of every entry (the callers in engine/runtime/ops/ guarantee it; tables may assume it):
//  - All tensors are defined and live on the table's device; outputs are preallocated by the caller and are
//    overwritten (never read) unless the entry says it accumulates.
//  - Tensors are contiguous unless the entry says "any strides".
//  - Floating operands of one call share one compute dtype `ct` (KernelTable::compute_dtype decides it); the
//    statistics an op saves (rstd, lse) and loss scalars are in stat_dtype(ct): f64 for f64, f32 otherwise.
//  - Index operands (ids, labels, positions, segments) are int32.
//  - Entries run asynchronously on the device's compute stream where the device has one: no entry waits for
//    the device or reads a device value on the host. Scalars that the device computes (a loss, an upstream
//    gradient of a loss) stay in one-element tensors.
//  - A device that cannot run an entry for a dtype says so through `unsupported` before the call is made
//    (detail::require in engine/runtime/ops/op_inputs.hpp turns it into an error naming the op).
#pragma once

#include <cstdint>

#include "engine/runtime/tensor.hpp"
#include "kernels/cpu/pointwise_ops.hpp"

namespace engine::rt {

// One value per table entry, for KernelTable::unsupported.
enum class Kernel : uint32_t {
  Copy,
  Fill,
  FillFromScalar,
  Axpby,
  AddBroadcast,
  MulBroadcast,
  Scale,
  Silu,
  SiluBackward,
  Swiglu,
  SwigluBackward,
  Dropout,
  RmsNorm,
  RmsNormBackward,
  Rope,
  Softmax,
  SoftmaxBackward,
  Embedding,
  EmbeddingBackward,
  FirstBadId,
  Gemm,
  SumAll,
  SumRows,
  SumRowsProduct,
  SumSquares,
  CountNonfinite,
  CrossEntropy,
  CrossEntropyBackward,
  LinearCrossEntropy,
  LinearCrossEntropyBackward,
  Attention,
  AttentionBackward,
  Unary,
  UnaryBackward,
  Binary,
  Where,
  ReduceTo,
  ForeachUpdate,
  Count
};

// The pointwise functions, their broadcast layout and the foreach updates are defined with their kernels
// (kernels/cpu/pointwise_ops.hpp, shared by kernels/cuda).
using cpu::BinaryOp;
using cpu::Broadcast;
using cpu::ForeachArgs;
using cpu::ForeachOp;
using cpu::UnaryOp;
static_assert(cpu::kBroadcastMaxDims == kMaxDims);

const char* kernel_name(Kernel k);

// Row-major C (M, N) = alpha * op(A) op(B) + beta * C [+ bias (N) on every row], repeated `batch` times with
// element strides between the batches' operands (stride 0: one operand shared by all batches). op(X) is X or
// X^T; lda/ldb/ldc are the row strides (in elements) of A, B and C as stored. A and B share a dtype; C (and
// bias) may be that dtype or f32.
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  double alpha = 1.0, beta = 0.0;
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};

// Causal grouped-query attention shapes: q, out (B, Tq, Hq, D); k, v (B, Tk, Hkv, D) with kv_batch_stride
// elements between batches; query row i sits at key position q_offset + i.
struct AttentionShape {
  int64_t B = 0, Tq = 0, Tk = 0, Hq = 0, Hkv = 0, D = 0;
  int64_t q_offset = 0;
  int64_t kv_batch_stride = 0;
};

// RoPE rotation parameters (Hugging Face rotate_half). inv_freq is host memory (rotary_dim / 2 floats from
// cpu::rope_inv_freq); a device that needs it in its own memory keeps an uploaded copy per distinct table.
struct RopeArgs {
  int64_t rotary_dim = 0;
  const float* inv_freq = nullptr;
  bool inverse = false;  // rotate by -angle (the backward)
};

struct KernelTable {
  // Name of the device kind, for messages ("cpu", "cuda").
  const char* device_name;
  // nullptr when `k` runs on operands of compute dtype `ct` here, else one sentence saying why not.
  const char* (*unsupported)(Kernel k, DType ct);
  // The compute dtype of an op whose floating inputs have the n dtypes `in` (n >= 1); throws engine::Error
  // naming `op` when they cannot be combined. CPU: f64 if all are f64, else f32. CUDA: f32 if all are f32,
  // else bf16 (bf16 storage and tensor-core GEMMs; the kernels keep fp32 statistics and accumulators).
  DType (*compute_dtype)(const char* op, const DType* in, int n);

  // ---- data movement
  // ---------------------------------------------------------------------------------------- dst = src
  // converted to dst's dtype; same shape, any strides on both sides, any dtype pair.
  void (*copy)(const Tensor& dst, const Tensor& src);
  // dst[:] = value (rounded to dst's dtype).
  void (*fill)(const Tensor& dst, double value);
  // dst[:] = multiplier * scalar[0]; scalar a one-element f32/f64 tensor.
  void (*fill_from_scalar)(const Tensor& dst, const Tensor& scalar, double multiplier);
  // dst = a * dst + b * src; dst f32 or f64 (or the compute dtype), src any floating dtype of dst's numel.
  void (*axpby)(const Tensor& dst, double a, const Tensor& src, double b);

  // ---- elementwise (one compute dtype)
  // ------------------------------------------------------------------------ out = a + b / a * b with b
  // (inner elements) broadcast over a's outer = a.numel / inner rows.
  void (*add_broadcast)(const Tensor& a, const Tensor& b, const Tensor& out);
  void (*mul_broadcast)(const Tensor& a, const Tensor& b, const Tensor& out);
  // out = s * x
  void (*scale)(const Tensor& x, double s, const Tensor& out);
  // y = silu(x); dx = dy * silu'(x)
  void (*silu)(const Tensor& x, const Tensor& y);
  void (*silu_backward)(const Tensor& dy, const Tensor& x, const Tensor& dx);
  // y = silu(gate) * up; grad_gate / grad_up (optional: undefined when not needed)
  void (*swiglu)(const Tensor& gate, const Tensor& up, const Tensor& y);
  void (*swiglu_backward)(const Tensor& dy, const Tensor& gate, const Tensor& up, const Tensor& grad_gate,
                          const Tensor& grad_up);
  // y = x * keep(seed, i) / (1 - p), the counter-based mask of kernels/cpu/dropout.hpp
  void (*dropout)(const Tensor& x, const Tensor& y, double p, uint64_t seed);

  // ---- normalisation, rotation, softmax
  // ----------------------------------------------------------------------- x, y (N, C), w (C), rstd (N) in
  // stat_dtype
  void (*rms_norm)(const Tensor& x, const Tensor& w, double eps, const Tensor& y, const Tensor& rstd);
  // dx (N, C); dw (C) optional
  void (*rms_norm_backward)(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                            const Tensor& dx, const Tensor& dw);
  // x, y (B, T, H, D), positions (B, T)
  void (*rope)(const Tensor& x, const Tensor& positions, const RopeArgs& args, const Tensor& y);
  // over the last dim of x, y (N, C)
  void (*softmax)(const Tensor& x, const Tensor& y);
  void (*softmax_backward)(const Tensor& dy, const Tensor& y, const Tensor& dx);

  // ---- embedding ------------------------------------------------------------------------------------------
  // out (N, C) = table (V, C) rows at ids (N); table and out of one dtype (any, copied as stored)
  void (*embedding)(const Tensor& table, const Tensor& ids, const Tensor& out);
  // grad_table (V, C) = sum of grad_out rows per id (deterministic), zero for unused ids
  void (*embedding_backward)(const Tensor& grad_out, const Tensor& ids, const Tensor& grad_table);
  // (optional) index of the first id outside [0, vocab), -1 when all are valid. Reads the ids on the host, so
  // only devices whose memory the host reads directly provide it; elsewhere the engine checks ids where it
  // makes them (engine/train, engine/session).
  int64_t (*first_bad_id)(const Tensor& ids, int64_t vocab);

  // ---- products and reductions
  // ------------------------------------------------------------------------------ a, b, c: tensors whose
  // element 0 is element 0 of batch 0 of A, B, C; bias (N) optional
  void (*gemm)(const GemmArgs& args, const Tensor& a, const Tensor& b, const Tensor& c, const Tensor& bias);
  // out (one element, stat_dtype) = sum of x, or += when accumulate
  void (*sum_all)(const Tensor& x, const Tensor& out, bool accumulate);
  // out (cols) = column sums of x (rows, cols); the product form sums x * y
  void (*sum_rows)(const Tensor& x, const Tensor& out);
  void (*sum_rows_product)(const Tensor& x, const Tensor& y, const Tensor& out);
  // out (one element, f32 or f64) = sum of x^2 (+= when accumulate); x any floating dtype
  void (*sum_squares)(const Tensor& x, const Tensor& out, bool accumulate);
  // out (one element, i32) = number of NaN / Inf values of x (+= when accumulate); x any floating dtype
  void (*count_nonfinite)(const Tensor& x, const Tensor& out, bool accumulate);

  // ---- losses
  // ----------------------------------------------------------------------------------------------- loss (one
  // element, stat_dtype) = scale * sum over rows with label != ignore of lse - logit[label]; logits (N, V),
  // labels (N), lse (N) stat_dtype (0 for ignored rows)
  void (*cross_entropy)(const Tensor& logits, const Tensor& labels, int64_t ignore_index, double scale,
                        const Tensor& loss, const Tensor& lse);
  // dlogits = scale * dloss[0] * (softmax - onehot) on non-ignored rows, 0 elsewhere; dloss one element
  void (*cross_entropy_backward)(const Tensor& logits, const Tensor& labels, const Tensor& lse,
                                 int64_t ignore_index, double scale, const Tensor& dloss,
                                 const Tensor& dlogits);
  // The same loss of hidden (N, C) @ weight (V, C)^T, computed in chunks of chunk_rows rows so that the (N,
  // V) logits never exist at once (chunk_rows <= 0: the table's own choice).
  void (*linear_cross_entropy)(const Tensor& hidden, const Tensor& weight, const Tensor& labels,
                               int64_t ignore_index, double scale, int64_t chunk_rows, const Tensor& loss,
                               const Tensor& lse);
  // grad_hidden (N, C) and grad_weight (V, C), either optional
  void (*linear_cross_entropy_backward)(const Tensor& hidden, const Tensor& weight, const Tensor& labels,
                                        const Tensor& lse, int64_t ignore_index, double scale,
                                        int64_t chunk_rows, const Tensor& dloss, const Tensor& grad_hidden,
                                        const Tensor& grad_weight);

  // ---- attention
  // -------------------------------------------------------------------------------------------- causal GQA;
  // segments (B, T) optional (training only: Tq == Tk, q_offset 0); lse (B, Hq, Tq) optional
  void (*attention)(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& segments, double scale, const Tensor& out, const Tensor& lse);
  // grad_q, grad_k, grad_v dense, overwritten
  void (*attention_backward)(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& segments, double scale, const Tensor& out, const Tensor& lse,
                             const Tensor& grad_out, const Tensor& grad_q, const Tensor& grad_k,
                             const Tensor& grad_v);

  // ---- elementwise math (the op table's ABI 1.1 entries: sqrt ... clamp, div, maximum, where, foreach_)
  // y = f(x), x and y of one shape
  void (*unary)(UnaryOp op, const Tensor& x, double p0, double p1, const Tensor& y);
  // dx = dy * f'(x) (y = f(x) as forward returned it; Sign's dx is 0)
  void (*unary_backward)(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y, double p0, double p1,
                         const Tensor& dx);
  // out (bc.shape) = a op b with a, b laid out by bc.stride[0], bc.stride[1]
  void (*binary)(BinaryOp op, const Broadcast& bc, const Tensor& a, const Tensor& b, const Tensor& out);
  // out (bc.shape) = cond != 0 ? a : b with cond, a, b laid out by bc.stride[0..2]
  void (*where)(const Broadcast& bc, const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);
  // The backward of a broadcast: out = sum of x (contiguous, bc.shape) into out (contiguous), x's element at
  // output index i adding to out's element at sum_d i_d * bc.stride[0][d] (0 along the dims summed over). Each
  // out element sums in a fixed order (deterministic).
  void (*reduce_to)(const Broadcast& bc, const Tensor& x, const Tensor& out);
  // For each i < n: dst[i] updated in place by args (ForeachArgs); x[i] and y[i] (undefined when args.op
  // does not read y) contiguous, of dst[i]'s dtype and numel.
  void (*foreach_update)(const ForeachArgs& args, int64_t n, const Tensor* dst, const Tensor* x,
                         const Tensor* y);
};

// f64 for f64 compute, f32 otherwise: the dtype of rstd, lse and loss scalars.
inline DType stat_dtype(DType ct) { return ct == ENG_F64 ? ENG_F64 : ENG_F32; }

// The CPU table (engine/runtime/devices/cpu/cpu_kernel_table.cpp) and, in builds with the CUDA backend, the
// CUDA table (engine/runtime/devices/cuda/cuda_kernel_table.cpp).
const KernelTable& cpu_kernel_table();
const KernelTable& cuda_kernel_table();

}  // namespace engine::rt
