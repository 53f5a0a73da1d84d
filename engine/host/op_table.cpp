// The op table (eng_op_table, host->ops): every built-in op a plugin calls, each entry a node run through
// the session's tape (recorded when ctx->grad_enabled is set), plus the in-place kernels and custom ops that
// plugins register (host->op_register).
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/host/custom_op_node.hpp"
#include "engine/host/entry_args.hpp"
#include "engine/host/entry_guard.hpp"
#include "engine/host/host_api.hpp"
#include "engine/host/host_entries.hpp"
#include "engine/host/tensor_parallel.hpp"
#include "engine/host/linear_seam.hpp"
#include "engine/host/tensor_parallel.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::host {

namespace {

using rt::Tensor;

// A node with one output through the tape.
Tensor node1(HostSession& s, bool grad, std::unique_ptr<rt::Node> node, std::vector<Tensor> inputs) {
  return s.apply1(grad, std::move(node), std::move(inputs));
}

eng_status op_embedding(const eng_ctx* ctx, eng_param table, eng_tensor ids, eng_tensor* out) {
  return op1(ctx, "embedding", out, [&](HostSession& s, bool g) {
    rt::Param& t = param_arg(table, "embedding");
    if (split_dim(t) == 0) return tp_embedding(s, g, t, tensor_of(ids, "ids"));  // vocabulary-parallel (tp)
    Tensor w = param_input(s, g, t);
    return node1(s, g, rt::ops::make_embedding(), {w, tensor_of(ids, "ids")});
  });
}

eng_status op_linear(const eng_ctx* ctx, eng_tensor x, eng_param weight, eng_param bias, eng_tensor* out) {
  return op1(ctx, "linear", out, [&](HostSession& s, bool g) {
    return linear(s, g, tensor_of(x, "x"), param_arg(weight, "weight"), bias ? &param_of(bias) : nullptr);
  });
}

eng_status op_matmul(const eng_ctx* ctx, eng_tensor a, eng_tensor b, int32_t trans_a, int32_t trans_b,
                     eng_tensor* out) {
  return op1(ctx, "matmul", out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_matmul(trans_a != 0, trans_b != 0),
                 {tensor_of(a, "a"), tensor_of(b, "b")});
  });
}

eng_status op_add(const eng_ctx* ctx, eng_tensor a, eng_tensor b, eng_tensor* out) {
  return op1(ctx, "add", out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_add(), {tensor_of(a, "a"), tensor_of(b, "b")});
  });
}

eng_status op_mul(const eng_ctx* ctx, eng_tensor a, eng_tensor b, eng_tensor* out) {
  return op1(ctx, "mul", out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_mul(), {tensor_of(a, "a"), tensor_of(b, "b")});
  });
}

eng_status op_scale(const eng_ctx* ctx, eng_tensor x, double factor, eng_tensor* out) {
  return op1(ctx, "scale", out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_scale(factor), {tensor_of(x, "x")});
  });
}

eng_status op_rms_norm(const eng_ctx* ctx, eng_tensor x, eng_param weight, double eps, eng_tensor* out) {
  return op1(ctx, "rms_norm", out, [&](HostSession& s, bool g) {
    Tensor w = param_input(s, g, param_arg(weight, "rms_norm"));
    return node1(s, g, rt::ops::make_rms_norm(eps), {tensor_of(x, "x"), w});
  });
}

eng_status op_rope(const eng_ctx* ctx, eng_tensor x, eng_tensor position_ids, const eng_rope_config* cfg,
                   eng_tensor* out) {
  return op1(ctx, "rope", out, [&](HostSession& s, bool g) {
    if (cfg == nullptr) fail("the rope config is NULL");
    eng_rope_config c{};
    std::memcpy(&c, cfg, std::min<size_t>(cfg->struct_size, sizeof c));
    c.struct_size = sizeof c;
    return node1(s, g, rt::ops::make_rope(c), {tensor_of(x, "x"), tensor_of(position_ids, "position_ids")});
  });
}

eng_status op_attention(const eng_ctx* ctx, eng_tensor q, eng_tensor k, eng_tensor v, eng_tensor segment_ids,
                        double softmax_scale, eng_kv_cache kv_cache, int32_t layer, eng_tensor* out) {
  return op1(ctx, "attention", out, [&](HostSession& s, bool g) {
    if (kv_cache != nullptr)  // generation: appends to the cache, never recorded
      return rt::ops::attention_with_cache(tensor_of(q, "q"), tensor_of(k, "k"), tensor_of(v, "v"),
                                           softmax_scale, *reinterpret_cast<rt::KvCache*>(kv_cache), layer);
    return node1(s, g, rt::ops::make_attention(softmax_scale),
                 {tensor_of(q, "q"), tensor_of(k, "k"), tensor_of(v, "v"), optional_tensor(segment_ids)});
  });
}

eng_status op_silu(const eng_ctx* ctx, eng_tensor x, eng_tensor* out) {
  return op1(ctx, "silu", out,
             [&](HostSession& s, bool g) { return node1(s, g, rt::ops::make_silu(), {tensor_of(x, "x")}); });
}

eng_status op_swiglu(const eng_ctx* ctx, eng_tensor gate, eng_tensor up, eng_tensor* out) {
  return op1(ctx, "swiglu", out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_swiglu(), {tensor_of(gate, "gate"), tensor_of(up, "up")});
  });
}

eng_status op_softmax(const eng_ctx* ctx, eng_tensor x, eng_tensor* out) {
  return op1(ctx, "softmax", out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_softmax(), {tensor_of(x, "x")});
  });
}

eng_status op_cross_entropy(const eng_ctx* ctx, eng_tensor logits, eng_tensor labels, int64_t ignore_index,
                            double scale, eng_tensor* out) {
  return op1(ctx, "cross_entropy", out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_cross_entropy(ignore_index, scale),
                 {tensor_of(logits, "logits"), tensor_of(labels, "labels")});
  });
}

eng_status op_linear_cross_entropy(const eng_ctx* ctx, eng_tensor hidden, eng_param weight, eng_tensor labels,
                                   int64_t ignore_index, double scale, eng_tensor* out) {
  return op1(ctx, "linear_cross_entropy", out, [&](HostSession& s, bool g) {
    rt::Param& head = param_arg(weight, "linear_cross_entropy");
    if (split_dim(head) == 0) {  // vocabulary-parallel (tp): the labels are read on the host
      const Tensor l = tensor_of(labels, "labels");
      if (l.dtype() != ENG_I32) fail("linear_cross_entropy: labels must be int32, got {}", l.describe());
      std::vector<int32_t> host_labels(static_cast<size_t>(l.numel()));
      l.contiguous().copy_to_host(host_labels.data(), host_labels.size() * sizeof(int32_t));
      for (size_t i = 0; i < host_labels.size(); ++i)
        if (host_labels[i] != ignore_index && (host_labels[i] < 0 || host_labels[i] >= head.shape()[0]))
          fail("linear_cross_entropy: label {} at row {} is outside the vocabulary of {} (and is not ignore_index {})",
               host_labels[i], i, head.shape()[0], ignore_index);
      return tp_linear_cross_entropy(s, g, tensor_of(hidden, "hidden"), head, host_labels, ignore_index, scale);
    }
    Tensor w = param_input(s, g, head);
    return node1(s, g, rt::ops::make_linear_cross_entropy(ignore_index, scale),
                 {tensor_of(hidden, "hidden"), w, tensor_of(labels, "labels")});
  });
}

eng_status op_dropout(const eng_ctx* ctx, eng_tensor x, double p, eng_tensor* out) {
  return op1(ctx, "dropout", out, [&](HostSession& s, bool g) {
    if (!(p >= 0.0 && p < 1.0)) fail("dropout probability {} is outside [0, 1)", p);
    // The mask's seed is drawn now and kept in the node, so a checkpoint replay reproduces the same mask.
    return node1(s, g, rt::ops::make_dropout(p, s.rng().next_u64()), {tensor_of(x, "x")});
  });
}

eng_status op_cast(const eng_ctx* ctx, eng_tensor x, eng_dtype dtype, eng_tensor* out) {
  return op1(ctx, "cast", out, [&](HostSession& s, bool g) {
    check_dtype(dtype);
    return node1(s, g, rt::ops::make_cast(dtype), {tensor_of(x, "x")});
  });
}

eng_status op_reshape(const eng_ctx* ctx, eng_tensor x, int32_t ndim, const int64_t* shape, eng_tensor* out) {
  return op1(ctx, "reshape", out, [&](HostSession& s, bool g) {
    if (ndim < 0 || ndim > ENG_MAX_DIMS || (ndim > 0 && shape == nullptr))
      fail("invalid target shape of rank {}", ndim);
    return node1(s, g, rt::ops::make_reshape(ndim, shape), {tensor_of(x, "x")});
  });
}

eng_status op_transpose(const eng_ctx* ctx, eng_tensor x, int32_t dim0, int32_t dim1, eng_tensor* out) {
  return op1(ctx, "transpose", out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_transpose(dim0, dim1), {tensor_of(x, "x")});
  });
}

eng_status op_slice(const eng_ctx* ctx, eng_tensor x, int32_t dim, int64_t start, int64_t end,
                    eng_tensor* out) {
  return op1(ctx, "slice", out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_slice(dim, start, end), {tensor_of(x, "x")});
  });
}

eng_status op_concat(const eng_ctx* ctx, int32_t n, const eng_tensor* xs, int32_t dim, eng_tensor* out) {
  return op1(ctx, "concat", out, [&](HostSession& s, bool g) {
    if (n <= 0 || xs == nullptr) fail("concat needs at least one tensor (n = {})", n);
    std::vector<Tensor> in;
    for (int32_t i = 0; i < n; ++i) in.push_back(tensor_of(xs[i], "xs[i]"));
    return node1(s, g, rt::ops::make_concat(dim), std::move(in));
  });
}

eng_status op_contiguous(const eng_ctx* ctx, eng_tensor x, eng_tensor* out) {
  return op1(ctx, "contiguous", out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_contiguous(), {tensor_of(x, "x")});
  });
}

eng_status op_sum(const eng_ctx* ctx, eng_tensor x, eng_tensor* out) {
  return op1(ctx, "sum", out,
             [&](HostSession& s, bool g) { return node1(s, g, rt::ops::make_sum(), {tensor_of(x, "x")}); });
}

eng_status op_param(const eng_ctx* ctx, eng_param p, eng_tensor* out) {
  return op1(ctx, "param", out,
             [&](HostSession& s, bool g) { return param_input(s, g, param_arg(p, "param")); });
}

eng_status op_custom(const eng_ctx* ctx, eng_op_id op, const eng_tensor* inputs, const void* attrs,
                     eng_tensor* outputs) {
  const char* what = "custom op";
  return guarded(ctx, what, [&] {
    HostSession& s = session_of(ctx);
    const CustomOpDef& def = s.custom_op(op);
    if (outputs == nullptr) fail("'{}': the outputs pointer is NULL", def.name);
    for (int32_t j = 0; j < def.op.n_outputs; ++j) outputs[j] = nullptr;
    if (def.op.n_inputs > 0 && inputs == nullptr) fail("'{}': the inputs pointer is NULL", def.name);
    std::vector<Tensor> in;
    for (int32_t i = 0; i < def.op.n_inputs; ++i) in.push_back(optional_tensor(inputs[i]));
    std::vector<Tensor> outs =
        s.apply(ctx->grad_enabled != 0, std::make_unique<CustomOpNode>(s, def, attrs), in);
    for (size_t j = 0; j < outs.size(); ++j) outputs[j] = make_handle(std::move(outs[j]));
  });
}

eng_status op_axpby_(const eng_ctx* ctx, eng_tensor dst, double a, eng_tensor src, double b) {
  return guarded(ctx, "axpby_", [&] {
    session_of(ctx);
    Tensor d = tensor_of(dst, "dst");
    rt::ops::axpby_(d, a, tensor_of(src, "src"), b);
  });
}

eng_status op_copy_(const eng_ctx* ctx, eng_tensor dst, eng_tensor src) {
  return guarded(ctx, "copy_", [&] {
    session_of(ctx);
    Tensor d = tensor_of(dst, "dst");
    rt::ops::copy_(d, tensor_of(src, "src"));
  });
}

eng_status op_fill_(const eng_ctx* ctx, eng_tensor dst, double value) {
  return guarded(ctx, "fill_", [&] {
    session_of(ctx);
    Tensor d = tensor_of(dst, "dst");
    rt::ops::fill_(d, value);
  });
}

// ---- appended in ABI 1.1: elementwise math for device-independent optimizers ----------------------------

eng_status op_unary(const eng_ctx* ctx, const char* what, rt::UnaryOp op, eng_tensor x, double p0, double p1,
                    eng_tensor* out) {
  return op1(ctx, what, out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_unary(op, p0, p1), {tensor_of(x, "x")});
  });
}

eng_status op_binary(const eng_ctx* ctx, const char* what, rt::BinaryOp op, eng_tensor a, eng_tensor b,
                     eng_tensor* out) {
  return op1(ctx, what, out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_binary(op), {tensor_of(a, "a"), tensor_of(b, "b")});
  });
}

eng_status op_sqrt(const eng_ctx* ctx, eng_tensor x, eng_tensor* out) {
  return op_unary(ctx, "sqrt", rt::UnaryOp::Sqrt, x, 0, 0, out);
}
eng_status op_rsqrt(const eng_ctx* ctx, eng_tensor x, eng_tensor* out) {
  return op_unary(ctx, "rsqrt", rt::UnaryOp::Rsqrt, x, 0, 0, out);
}
eng_status op_sign(const eng_ctx* ctx, eng_tensor x, eng_tensor* out) {
  return op_unary(ctx, "sign", rt::UnaryOp::Sign, x, 0, 0, out);
}
eng_status op_abs(const eng_ctx* ctx, eng_tensor x, eng_tensor* out) {
  return op_unary(ctx, "abs", rt::UnaryOp::Abs, x, 0, 0, out);
}
eng_status op_pow_scalar(const eng_ctx* ctx, eng_tensor x, double exponent, eng_tensor* out) {
  return op_unary(ctx, "pow_scalar", rt::UnaryOp::PowScalar, x, exponent, 0, out);
}
eng_status op_clamp(const eng_ctx* ctx, eng_tensor x, double lo, double hi, eng_tensor* out) {
  return op_unary(ctx, "clamp", rt::UnaryOp::Clamp, x, lo, hi, out);
}
eng_status op_div(const eng_ctx* ctx, eng_tensor a, eng_tensor b, eng_tensor* out) {
  return op_binary(ctx, "div", rt::BinaryOp::Div, a, b, out);
}
eng_status op_maximum(const eng_ctx* ctx, eng_tensor a, eng_tensor b, eng_tensor* out) {
  return op_binary(ctx, "maximum", rt::BinaryOp::Maximum, a, b, out);
}
eng_status op_minimum(const eng_ctx* ctx, eng_tensor a, eng_tensor b, eng_tensor* out) {
  return op_binary(ctx, "minimum", rt::BinaryOp::Minimum, a, b, out);
}

eng_status op_where(const eng_ctx* ctx, eng_tensor cond, eng_tensor a, eng_tensor b, eng_tensor* out) {
  return op1(ctx, "where", out, [&](HostSession& s, bool g) {
    return node1(s, g, rt::ops::make_where(), {tensor_of(cond, "cond"), tensor_of(a, "a"), tensor_of(b, "b")});
  });
}

// The n tensors of a foreach list; `what` names the list.
std::vector<Tensor> tensor_list(int32_t n, const eng_tensor* handles, const char* what) {
  if (n < 0) fail("the list length n = {} is negative", n);
  if (n > 0 && handles == nullptr) fail("the list {} is NULL but n = {}", what, n);
  std::vector<Tensor> out;
  out.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    if (handles[i] == nullptr) fail("{}[{}] is NULL", what, i);
    out.push_back(tensor_of(handles[i], what));
  }
  return out;
}

eng_status foreach_entry(const eng_ctx* ctx, const char* what, const rt::ForeachArgs& args, int32_t n,
                         const eng_tensor* dst, const eng_tensor* x, const eng_tensor* y) {
  return guarded(ctx, what, [&] {
    session_of(ctx);
    rt::ops::foreach_update(what, args, tensor_list(n, dst, "dst"), tensor_list(n, x, "x"),
                            y != nullptr ? tensor_list(n, y, "y") : std::vector<Tensor>{});
  });
}

eng_status op_foreach_axpby_(const eng_ctx* ctx, int32_t n, const eng_tensor* dst, double a,
                             const eng_tensor* src, double b) {
  rt::ForeachArgs f;
  f.op = rt::ForeachOp::Axpby;
  f.a = a;
  f.b = b;
  return foreach_entry(ctx, "foreach_axpby_", f, n, dst, src, nullptr);
}

eng_status op_foreach_addcmul_(const eng_ctx* ctx, int32_t n, const eng_tensor* dst, double a,
                               const eng_tensor* x, const eng_tensor* y, double c) {
  rt::ForeachArgs f;
  f.op = rt::ForeachOp::Addcmul;
  f.a = a;
  f.c = c;
  if (y == nullptr && n > 0)
    return guarded(ctx, "foreach_addcmul_", [&] { fail("the list y is NULL but n = {}", n); });
  return foreach_entry(ctx, "foreach_addcmul_", f, n, dst, x, y);
}

eng_status op_foreach_addcdiv_(const eng_ctx* ctx, int32_t n, const eng_tensor* dst, double a,
                               const eng_tensor* x, const eng_tensor* y, double c, double y_scale, double eps,
                               int32_t sqrt_y) {
  rt::ForeachArgs f;
  f.op = rt::ForeachOp::Addcdiv;
  f.a = a;
  f.c = c;
  f.d = y_scale;
  f.eps = eps;
  f.sqrt_y = sqrt_y != 0;
  if (y == nullptr && n > 0)
    return guarded(ctx, "foreach_addcdiv_", [&] { fail("the list y is NULL but n = {}", n); });
  return foreach_entry(ctx, "foreach_addcdiv_", f, n, dst, x, y);
}

eng_status op_foreach_add_sign_(const eng_ctx* ctx, int32_t n, const eng_tensor* dst, double a,
                                const eng_tensor* x, double p, const eng_tensor* y, double q, double c) {
  rt::ForeachArgs f;
  f.op = rt::ForeachOp::AddSign;
  f.a = a;
  f.b = p;
  f.d = q;
  f.c = c;
  return foreach_entry(ctx, "foreach_add_sign_", f, n, dst, x, y);
}

const eng_op_table kOpTable = {
    .struct_size = sizeof(eng_op_table),
    .embedding = op_embedding,
    .linear = op_linear,
    .matmul = op_matmul,
    .add = op_add,
    .mul = op_mul,
    .scale = op_scale,
    .rms_norm = op_rms_norm,
    .rope = op_rope,
    .attention = op_attention,
    .silu = op_silu,
    .swiglu = op_swiglu,
    .softmax = op_softmax,
    .cross_entropy = op_cross_entropy,
    .linear_cross_entropy = op_linear_cross_entropy,
    .dropout = op_dropout,
    .cast = op_cast,
    .reshape = op_reshape,
    .transpose = op_transpose,
    .slice = op_slice,
    .concat = op_concat,
    .contiguous = op_contiguous,
    .sum = op_sum,
    .param = op_param,
    .custom = op_custom,
    .axpby_ = op_axpby_,
    .copy_ = op_copy_,
    .fill_ = op_fill_,
    .sqrt = op_sqrt,
    .rsqrt = op_rsqrt,
    .div = op_div,
    .sign = op_sign,
    .abs = op_abs,
    .maximum = op_maximum,
    .minimum = op_minimum,
    .where = op_where,
    .pow_scalar = op_pow_scalar,
    .clamp = op_clamp,
    .foreach_axpby_ = op_foreach_axpby_,
    .foreach_addcmul_ = op_foreach_addcmul_,
    .foreach_addcdiv_ = op_foreach_addcdiv_,
    .foreach_add_sign_ = op_foreach_add_sign_,
};

}  // namespace

eng_status h_op_register(const eng_ctx* ctx, const eng_custom_op* op, eng_op_id* out) {
  return guarded(ctx, "op_register", [&] {
    if (op == nullptr || out == nullptr) fail("op and out must not be NULL");
    *out = session_of(ctx).register_op(*op);
  });
}

const eng_op_table* op_table() { return &kOpTable; }

}  // namespace engine::host
