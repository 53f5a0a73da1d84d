#include "engine/host/host_api.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/host/custom_op_node.hpp"
#include "engine/host/host_session.hpp"
#include "engine/host/linear_seam.hpp"
#include "engine/host/plugin_weights.hpp"
#include "engine/host/tensor_handle.hpp"
#include "engine/io/safetensors.hpp"
#include "engine/io/safetensors_writer.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::host {

namespace {

using rt::Tensor;

// ---- the ABI edge: exceptions -> status + message in the session's error slot ---------------------------

HostSession* session_or_null(const eng_ctx* ctx) noexcept {
  if (ctx == nullptr || ctx->struct_size < offsetof(eng_ctx, host_data) + sizeof(void*)) return nullptr;
  return static_cast<HostSession*>(ctx->host_data);
}

eng_status report(const eng_ctx* ctx, eng_status code, const char* what, const char* message) noexcept {
  try {
    if (HostSession* s = session_or_null(ctx)) s->set_error(code, fmt::format("{}: {}", what, message));
  } catch (...) {  // formatting failed (out of memory): the status code still goes back
  }
  return code;
}

template <typename F>
eng_status guarded(const eng_ctx* ctx, const char* what, F&& f) noexcept {
  try {
    f();
    return ENG_OK;
  } catch (const Error& e) {
    return report(ctx, e.status(), what, e.what());
  } catch (const std::bad_alloc&) {
    return report(ctx, ENG_ERR_OUT_OF_MEMORY, what, "out of memory");
  } catch (const std::exception& e) {
    return report(ctx, ENG_ERR_INTERNAL, what, e.what());
  } catch (...) {
    return report(ctx, ENG_ERR_INTERNAL, what, "unknown exception");
  }
}

rt::Device& device_for(const eng_ctx* ctx, HostSession& s) {
  if (ctx->device_type != static_cast<eng_device_type>(s.device().type()))
    fail_with(ENG_ERR_UNSUPPORTED, "the context asks for device type {} but this run's device is {}",
              ctx->device_type, rt::device_type_name(s.device().type()));
  return s.device();
}

rt::Dims dims_of(int32_t ndim, const int64_t* shape) {
  if (ndim < 0 || ndim > ENG_MAX_DIMS) fail("rank {} is outside 0..{}", ndim, ENG_MAX_DIMS);
  if (ndim > 0 && shape == nullptr) fail("the shape pointer is NULL for rank {}", ndim);
  rt::Dims d = rt::Dims::from(shape, ndim);
  for (int i = 0; i < ndim; ++i)
    if (d[i] < 0) fail("shape {} has a negative dimension", d.str());
  return d;
}

void check_dtype(eng_dtype dtype) {
  if (dtype > ENG_BOOL) fail("unknown dtype {}", dtype);
}

rt::Param& param_arg(eng_param p, const char* what) {
  if (p == nullptr) fail("the {} parameter handle is NULL", what);
  return param_of(p);
}

// One-output op: out receives a new handle.
template <typename F>
eng_status op1(const eng_ctx* ctx, const char* what, eng_tensor* out, F&& f) noexcept {
  return guarded(ctx, what, [&] {
    if (out == nullptr) fail("the output pointer is NULL");
    *out = nullptr;
    HostSession& s = session_of(ctx);
    Tensor r = f(s, ctx->grad_enabled != 0);
    *out = make_handle(std::move(r));
  });
}

// A node with one output through the tape.
Tensor node1(HostSession& s, bool grad, std::unique_ptr<rt::Node> node, std::vector<Tensor> inputs) {
  return s.apply1(grad, std::move(node), std::move(inputs));
}

// ---- the op table ---------------------------------------------------------------------------------------

eng_status op_embedding(const eng_ctx* ctx, eng_param table, eng_tensor ids, eng_tensor* out) {
  return op1(ctx, "embedding", out, [&](HostSession& s, bool g) {
    Tensor w = param_input(s, g, param_arg(table, "embedding"));
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
    Tensor w = param_input(s, g, param_arg(weight, "linear_cross_entropy"));
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

// ---- the host table -------------------------------------------------------------------------------------

void h_log(const eng_ctx*, eng_log_level level, const char* message) {
  const char* m = message != nullptr ? message : "";
  try {
    switch (level) {
      case ENG_LOG_TRACE:
        spdlog::trace("{}", m);
        break;
      case ENG_LOG_DEBUG:
        spdlog::debug("{}", m);
        break;
      case ENG_LOG_INFO:
        spdlog::info("{}", m);
        break;
      case ENG_LOG_WARN:
        spdlog::warn("{}", m);
        break;
      default:
        spdlog::error("{}", m);
        break;
    }
  } catch (...) {  // a failing log sink must not take the plugin down
  }
}

void h_set_error(const eng_ctx* ctx, eng_status code, const char* message) {
  try {
    if (HostSession* s = session_or_null(ctx)) s->set_error(code, message != nullptr ? message : "");
  } catch (...) {
  }
}

const char* h_get_error(const eng_ctx* ctx) {
  HostSession* s = session_or_null(ctx);
  return s != nullptr ? s->error() : "";
}

eng_status h_tensor_empty(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                          eng_tensor* out) {
  return op1(ctx, "tensor_empty", out, [&](HostSession& s, bool) {
    check_dtype(dtype);
    return Tensor::empty(dims_of(ndim, shape), dtype, device_for(ctx, s));
  });
}

eng_status h_tensor_zeros(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                          eng_tensor* out) {
  return op1(ctx, "tensor_zeros", out, [&](HostSession& s, bool) {
    check_dtype(dtype);
    return Tensor::zeros(dims_of(ndim, shape), dtype, device_for(ctx, s));
  });
}

eng_status h_tensor_from_host(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                              const void* data, size_t bytes, eng_tensor* out) {
  return op1(ctx, "tensor_from_host", out, [&](HostSession& s, bool) {
    check_dtype(dtype);
    rt::Dims d = dims_of(ndim, shape);
    const size_t want = static_cast<size_t>(d.numel()) * rt::dtype_size(dtype);
    if (bytes != want)
      fail("{} bytes given for a {} tensor of shape {} ({} bytes)", bytes, rt::dtype_name(dtype), d.str(),
           want);
    if (data == nullptr && bytes > 0) fail("the data pointer is NULL");
    return Tensor::from_host(d, dtype, device_for(ctx, s), data, bytes);
  });
}

eng_status h_tensor_to_host(const eng_ctx* ctx, eng_tensor t, void* dst, size_t bytes) {
  return guarded(ctx, "tensor_to_host", [&] {
    const Tensor& x = tensor_of(t, "t");
    if (dst == nullptr && bytes > 0) fail("the destination pointer is NULL");
    x.copy_to_host(dst, bytes);
  });
}

void h_tensor_retain(eng_tensor t) { retain(t); }
void h_tensor_release(eng_tensor t) { release(t); }
int32_t h_tensor_ndim(eng_tensor t) { return t != nullptr ? t->tensor.ndim() : -1; }
int64_t h_tensor_dim(eng_tensor t, int32_t i) {
  if (t == nullptr) return -1;
  const int n = t->tensor.ndim();
  const int j = i < 0 ? i + n : i;
  return j >= 0 && j < n ? t->tensor.shape()[j] : -1;
}
eng_dtype h_tensor_dtype(eng_tensor t) { return t != nullptr ? t->tensor.dtype() : ENG_F32; }

eng_status h_tensor_dlpack(eng_tensor t, DLTensor* out) {
  if (t == nullptr || out == nullptr) return ENG_ERR_INVALID_ARGUMENT;
  const Tensor& x = t->tensor;
  DLTensor d{};
  d.data = x.raw_data();
  d.device.device_type = x.device().type() == rt::DeviceType::CPU ? kDLCPU : kDLCUDA;
  d.device.device_id = x.device().index();
  d.ndim = x.ndim();
  switch (x.dtype()) {
    case ENG_F32:
      d.dtype = {kDLFloat, 32, 1};
      break;
    case ENG_F64:
      d.dtype = {kDLFloat, 64, 1};
      break;
    case ENG_F16:
      d.dtype = {kDLFloat, 16, 1};
      break;
    case ENG_BF16:
      d.dtype = {kDLBfloat, 16, 1};
      break;
    case ENG_I32:
      d.dtype = {kDLInt, 32, 1};
      break;
    case ENG_I64:
      d.dtype = {kDLInt, 64, 1};
      break;
    case ENG_I8:
      d.dtype = {kDLInt, 8, 1};
      break;
    case ENG_U8:
    case ENG_BOOL:
      d.dtype = {kDLUInt, 8, 1};
      break;
    default:
      return ENG_ERR_UNSUPPORTED;
  }
  // shape and strides point into the tensor's own (immutable) TensorImpl, alive while the handle is.
  d.shape = const_cast<int64_t*>(x.impl()->shape.d.data());
  d.strides = const_cast<int64_t*>(x.impl()->strides.d.data());
  d.byte_offset = 0;
  *out = d;
  return ENG_OK;
}

eng_status h_device_alloc(const eng_ctx* ctx, size_t bytes, void** out) {
  return guarded(ctx, "device_alloc", [&] {
    if (out == nullptr) fail("the output pointer is NULL");
    *out = nullptr;
    *out = session_of(ctx).device_alloc(bytes);
  });
}

void h_device_free(const eng_ctx* ctx, void* ptr) {
  guarded(ctx, "device_free", [&] { session_of(ctx).device_free(ptr); });
}

eng_status h_op_register(const eng_ctx* ctx, const eng_custom_op* op, eng_op_id* out) {
  return guarded(ctx, "op_register", [&] {
    if (op == nullptr || out == nullptr) fail("op and out must not be NULL");
    *out = session_of(ctx).register_op(*op);
  });
}

eng_status h_param_declare(const eng_ctx* ctx, const eng_param_decl* decl, eng_param* out) {
  return guarded(ctx, "param_declare", [&] {
    if (decl == nullptr || out == nullptr) fail("decl and out must not be NULL");
    *out = nullptr;
    eng_param_decl d{};
    std::memcpy(&d, decl, std::min<size_t>(decl->struct_size, sizeof d));
    if (d.name == nullptr) fail("the parameter declaration has no name");
    HostSession& s = session_of(ctx);
    rt::ParamDecl pd;
    pd.name = d.name;
    pd.shape = dims_of(d.ndim, d.shape);
    check_dtype(d.dtype);
    pd.dtype = d.dtype;
    pd.role = d.role;
    pd.flags = d.flags;
    pd.init = d.init;
    pd.init_arg = d.init_arg;
    if (d.tied_to != nullptr) pd.tied_to = d.tied_to;
    const int block = s.declaring() ? s.declaration_block() : s.tape().current_block();
    *out = param_handle(s.params().declare(pd, block));
  });
}

int64_t h_param_count(const eng_ctx* ctx) {
  HostSession* s = session_or_null(ctx);
  return s != nullptr ? static_cast<int64_t>(s->params().size()) : 0;
}

// Lookups without a status: failures return NULL (and leave a message where there is a context).

eng_param h_param_at(const eng_ctx* ctx, int64_t index) {
  HostSession* s = session_or_null(ctx);
  if (s == nullptr || index < 0 || index >= static_cast<int64_t>(s->params().size())) return nullptr;
  return param_handle(s->params().at(static_cast<size_t>(index)));
}

eng_param h_param_find(const eng_ctx* ctx, const char* name) {
  eng_param found = nullptr;
  guarded(ctx, "param_find", [&] {
    HostSession& s = session_of(ctx);
    if (name == nullptr) fail("the name is NULL");
    rt::Param* p = s.params().find(name);
    if (p != nullptr) found = param_handle(*p);
  });
  return found;
}

eng_status h_param_info(eng_param p, eng_param_info* out) {
  if (p == nullptr || out == nullptr) return ENG_ERR_INVALID_ARGUMENT;
  const uint32_t size = out->struct_size;
  if (size < sizeof(uint32_t)) return ENG_ERR_INVALID_ARGUMENT;
  eng_param_info info = param_info(param_of(p));  // no allocation: cannot throw
  std::memcpy(out, &info, std::min<size_t>(size, sizeof info));
  out->struct_size = static_cast<uint32_t>(std::min<size_t>(size, sizeof info));
  return ENG_OK;
}

eng_status h_param_value(const eng_ctx* ctx, eng_param p, eng_tensor* out) {
  return op1(ctx, "param_value", out,
             [&](HostSession& s, bool) { return s.params().value(param_arg(p, "param_value")); });
}

eng_status h_param_grad(const eng_ctx* ctx, eng_param p, eng_tensor* out) {
  return op1(ctx, "param_grad", out,
             [&](HostSession& s, bool) { return s.params().grad(param_arg(p, "param_grad")); });
}

eng_status h_param_set_trainable(const eng_ctx* ctx, eng_param p, int32_t trainable) {
  return guarded(ctx, "param_set_trainable", [&] {
    session_of(ctx).params().set_trainable(param_arg(p, "param_set_trainable"), trainable != 0);
  });
}

eng_status h_peft_attach(const eng_ctx* ctx, eng_param base, void* cookie) {
  return guarded(ctx, "peft_attach", [&] {
    session_of(ctx);
    rt::Param& p = param_arg(base, "peft_attach");
    if (p.decl.role != ENG_ROLE_LINEAR)
      fail("parameter '{}' is not a linear weight (role {}): adapters attach to linears only", p.name(),
           p.decl.role);
    p.peft_cookie = cookie;
  });
}

eng_status h_block_begin(const eng_ctx* ctx, int32_t block) {
  return guarded(ctx, "block_begin", [&] { session_of(ctx).block_begin(block); });
}

eng_status h_block_end(const eng_ctx* ctx, int32_t block) {
  return guarded(ctx, "block_end", [&] { session_of(ctx).block_end(block); });
}

uint64_t h_rng_next_u64(const eng_ctx* ctx) {
  HostSession* s = session_or_null(ctx);
  return s != nullptr ? s->rng().next_u64() : 0;
}

rt::StateDict& state_arg(eng_state st) {
  if (st == nullptr) fail("the state dictionary handle is NULL");
  return *reinterpret_cast<rt::StateDict*>(st);
}

eng_status h_state_put(const eng_ctx* ctx, eng_state st, const char* key, eng_tensor t) {
  return guarded(ctx, "state_put", [&] {
    if (key == nullptr) fail("the key is NULL");
    state_arg(st).put(key, tensor_of(t, "t"));
  });
}

eng_status h_state_get(const eng_ctx* ctx, eng_state st, const char* key, eng_tensor* out) {
  return guarded(ctx, "state_get", [&] {
    if (out == nullptr || key == nullptr) fail("key and out must not be NULL");
    *out = nullptr;
    *out = make_handle(state_arg(st).get(key));
  });
}

// ---- plugin-owned state dictionaries and tensor files ---------------------------------------------------

eng_status h_state_create(const eng_ctx* ctx, eng_state* out) {
  return guarded(ctx, "state_create", [&] {
    if (out == nullptr) fail("the output pointer is NULL");
    *out = nullptr;
    session_of(ctx);
    auto st = std::make_unique<rt::StateDict>();
    st->set_plugin_owned();
    *out = state_handle(*st.release());
  });
}

void h_state_destroy(eng_state st) {
  if (st == nullptr) return;
  auto* dict = reinterpret_cast<rt::StateDict*>(st);
  if (!dict->plugin_owned()) {  // the engine's own (checkpoint save/load): freeing it would be a double free
    try {
      spdlog::error(
          "state_destroy: a plugin tried to free a state dictionary the engine passed in; only states from "
          "state_create or safetensors_read are the plugin's to destroy (ignored)");
    } catch (...) {
    }
    return;
  }
  delete dict;
}

int64_t h_state_size(eng_state st) {
  return st != nullptr ? static_cast<int64_t>(reinterpret_cast<rt::StateDict*>(st)->size()) : -1;
}

const char* h_state_key_at(eng_state st, int64_t i) {
  if (st == nullptr || i < 0) return nullptr;
  try {
    return reinterpret_cast<rt::StateDict*>(st)->key_at(static_cast<size_t>(i));
  } catch (...) {  // building the key index ran out of memory
    return nullptr;
  }
}

std::string path_arg(const char* path) {
  if (path == nullptr) fail("the path is NULL; pass the file to use");
  if (*path == '\0') fail("the path is empty; pass the file to use");
  return path;
}

// metadata_json: NULL or a JSON object whose values are all strings ({"format": "pt"}).
std::map<std::string, std::string> metadata_arg(const char* metadata_json, const std::string& path) {
  std::map<std::string, std::string> out;
  if (metadata_json == nullptr) return out;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(metadata_json);
  } catch (const nlohmann::json::parse_error& e) {
    fail(
        "the metadata for {} is not valid JSON ({}); pass an object of strings such as {{\"format\": "
        "\"pt\"}}",
        path, e.what());
  }
  if (!j.is_object())
    fail("the metadata for {} is a JSON {}, not an object of strings such as {{\"format\": \"pt\"}}", path,
         j.type_name());
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string())
      fail("metadata entry '{}' for {} is a JSON {}; safetensors metadata values must be strings", key, path,
           value.type_name());
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

eng_status h_safetensors_write(const eng_ctx* ctx, const char* path, eng_state st,
                               const char* metadata_json) {
  return guarded(ctx, "safetensors_write", [&] {
    session_of(ctx);
    const std::string file = path_arg(path);
    const rt::StateDict& dict = state_arg(st);
    io::SafetensorsWriter w;
    for (const auto& [key, value] : dict.entries()) {
      Tensor c = value.contiguous();
      std::vector<std::byte> bytes(c.nbytes());
      c.copy_to_host(bytes.data(), bytes.size());
      try {
        w.add(key, c.dtype(), c.shape().vec(), bytes);
      } catch (const Error& e) {
        fail_with(e.status(), "{}: tensor '{}': {}", file, key, e.what());
      }
    }
    for (auto& [key, value] : metadata_arg(metadata_json, file)) w.set_metadata(key, value);
    w.write(file);
  });
}

eng_status h_safetensors_read(const eng_ctx* ctx, const char* path, eng_state* out) {
  return guarded(ctx, "safetensors_read", [&] {
    if (out == nullptr) fail("the output pointer is NULL");
    *out = nullptr;
    HostSession& s = session_of(ctx);
    rt::Device& device = device_for(ctx, s);
    const std::string file = path_arg(path);
    io::SafetensorsFile f = io::SafetensorsFile::open(file);
    auto dict = std::make_unique<rt::StateDict>();
    dict->set_plugin_owned();
    for (const io::SafetensorsTensor& t : f.tensors()) {
      if (!t.engine_dtype)
        fail_with(ENG_ERR_UNSUPPORTED,
                  "{}: tensor '{}' has dtype {}, which the engine has no tensor type for (it has F32, BF16, "
                  "F16, F64, I32, I64, U8, I8, BOOL); convert the file",
                  file, t.name, t.dtype_name);
      const rt::Dims shape = rt::Dims::from(t.shape.data(), static_cast<int>(t.shape.size()));
      dict->put(std::string(t.name), Tensor::from_host(shape, *t.engine_dtype, device, t.data, t.nbytes));
    }
    *out = state_handle(*dict.release());
  });
}

eng_status h_all_reduce_sum(const eng_ctx* ctx, eng_tensor t) {
  return guarded(ctx, "all_reduce_sum", [&] {
    Tensor x = tensor_of(t, "t");
    session_of(ctx).communicator().all_reduce_sum(x);
  });
}

eng_status h_broadcast(const eng_ctx* ctx, eng_tensor t, int32_t root) {
  return guarded(ctx, "broadcast", [&] {
    Tensor x = tensor_of(t, "t");
    session_of(ctx).communicator().broadcast(x, root);
  });
}

eng_status h_all_gather(const eng_ctx* ctx, eng_tensor shard, eng_tensor full) {
  return guarded(ctx, "all_gather", [&] {
    Tensor f = tensor_of(full, "full");
    session_of(ctx).communicator().all_gather(tensor_of(shard, "shard"), f);
  });
}

eng_status h_reduce_scatter_sum(const eng_ctx* ctx, eng_tensor full, eng_tensor shard) {
  return guarded(ctx, "reduce_scatter_sum", [&] {
    Tensor sh = tensor_of(shard, "shard");
    session_of(ctx).communicator().reduce_scatter_sum(tensor_of(full, "full"), sh);
  });
}

eng_status h_barrier(const eng_ctx* ctx) {
  return guarded(ctx, "barrier", [&] { session_of(ctx).communicator().barrier(); });
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
};

const eng_host_api kHostApi = {
    .struct_size = sizeof(eng_host_api),
    .abi_version = ENG_ABI_VERSION,
    .log = h_log,
    .set_error = h_set_error,
    .get_error = h_get_error,
    .tensor_empty = h_tensor_empty,
    .tensor_zeros = h_tensor_zeros,
    .tensor_from_host = h_tensor_from_host,
    .tensor_to_host = h_tensor_to_host,
    .tensor_retain = h_tensor_retain,
    .tensor_release = h_tensor_release,
    .tensor_ndim = h_tensor_ndim,
    .tensor_dim = h_tensor_dim,
    .tensor_dtype = h_tensor_dtype,
    .tensor_dlpack = h_tensor_dlpack,
    .device_alloc = h_device_alloc,
    .device_free = h_device_free,
    .ops = &kOpTable,
    .op_register = h_op_register,
    .param_declare = h_param_declare,
    .param_count = h_param_count,
    .param_at = h_param_at,
    .param_find = h_param_find,
    .param_info = h_param_info,
    .param_value = h_param_value,
    .param_grad = h_param_grad,
    .param_set_trainable = h_param_set_trainable,
    .peft_attach = h_peft_attach,
    .block_begin = h_block_begin,
    .block_end = h_block_end,
    .rng_next_u64 = h_rng_next_u64,
    .state_put = h_state_put,
    .state_get = h_state_get,
    .all_reduce_sum = h_all_reduce_sum,
    .broadcast = h_broadcast,
    .all_gather = h_all_gather,
    .reduce_scatter_sum = h_reduce_scatter_sum,
    .barrier = h_barrier,
    .state_create = h_state_create,
    .state_destroy = h_state_destroy,
    .state_size = h_state_size,
    .state_key_at = h_state_key_at,
    .safetensors_write = h_safetensors_write,
    .safetensors_read = h_safetensors_read,
};

}  // namespace

const eng_host_api* host_api() { return &kHostApi; }
const eng_op_table* op_table() { return &kOpTable; }

}  // namespace engine::host
