// engine/cpp/host.hpp: engine::sdk::Host, the C++ face of the host service table for one call.
//
// A Host pairs the table (const eng_host_api*) with the context of the ABI call being served (const
// eng_ctx*). Every method forwards to the table; every failure throws engine::sdk::Error carrying the host's
// message (host->get_error) and status. Ops return new Tensors (one reference each, released by Tensor).
//
//   Tensor h = host.embedding(embed_tokens, ids);               // ids (B,T) i32 -> (B,T,C)
//   Tensor q = host.linear(host.rms_norm(h, ln, 1e-6), q_proj);  // (B,T,C) -> (B,T,Hq*D)
//   { NoGrad no_grad(host); host.axpby_(value, 1.0, grad, -lr); } // untaped update
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "engine/abi/engine.h"
#include "engine/cpp/error.hpp"
#include "engine/cpp/param.hpp"
#include "engine/cpp/tensor.hpp"

namespace engine::sdk {

// A plugin's own recipe section and other JSON strings the engine passes are plain std::string; see json.hpp.

// ---- plugin-owned state dictionaries (tensor files) ------------------------------------------------------
// A string -> tensor dictionary the plugin owns (from Host::state_create or Host::read_safetensors), freed
// with state_destroy when the State ends. Move-only. Entries go in and out through Host::state_put/state_get.
class State {
 public:
  State() noexcept = default;
  // Takes over `st` (a state from state_create or safetensors_read; never one the engine passed in).
  State(const eng_host_api* api, eng_state st) noexcept : api_(api), st_(st) {}
  State(State&& o) noexcept : api_(o.api_), st_(std::exchange(o.st_, nullptr)) {}
  State& operator=(State&& o) noexcept {
    if (this != &o) {
      reset();
      api_ = o.api_;
      st_ = std::exchange(o.st_, nullptr);
    }
    return *this;
  }
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() { reset(); }

  eng_state get() const noexcept { return st_; }
  explicit operator bool() const noexcept { return st_ != nullptr; }
  int64_t size() const noexcept { return st_ != nullptr ? api_->state_size(st_) : 0; }
  // The keys in sorted order.
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    const int64_t n = size();
    out.reserve(static_cast<size_t>(n > 0 ? n : 0));
    for (int64_t i = 0; i < n; ++i) {
      const char* k = api_->state_key_at(st_, i);
      if (k == nullptr) throw Error("state_key_at returned no key " + std::to_string(i), ENG_ERR_INTERNAL);
      out.emplace_back(k);
    }
    return out;
  }
  void reset() noexcept {
    if (st_ != nullptr) api_->state_destroy(st_);
    st_ = nullptr;
  }

 private:
  const eng_host_api* api_ = nullptr;
  eng_state st_ = nullptr;
};

// An op table entry appended in ABI 1.1, read only when the engine's table is large enough (Host::new_op).
#define ENGINE_SDK_OP_1_1(entry) new_op(offsetof(eng_op_table, entry), [&] { return ops()->entry; }, #entry)

class Host {
 public:
  Host(const eng_host_api* api, const eng_ctx* ctx) noexcept : api_(api), ctx_(ctx) {}

  const eng_host_api* api() const noexcept { return api_; }
  const eng_ctx* ctx() const noexcept { return ctx_; }

  // ---- the context -------------------------------------------------------------------------------------
  eng_device_type device_type() const noexcept { return ctx_->device_type; }
  int32_t device_index() const noexcept { return ctx_->device_index; }
  bool on_cuda() const noexcept { return ctx_->device_type == ENG_DEVICE_CUDA; }
  bool grad_enabled() const noexcept { return ctx_->grad_enabled != 0; }
  int32_t rank() const noexcept { return ctx_->rank; }
  int32_t world_size() const noexcept { return ctx_->world_size; }
  int32_t local_rank() const noexcept { return ctx_->local_rank; }
  void* stream() const noexcept { return ctx_->stream; }  // cudaStream_t on CUDA, nullptr on the CPU

  // ---- logging and errors ------------------------------------------------------------------------------
  void log(eng_log_level level, const std::string& message) const { api_->log(ctx_, level, message.c_str()); }
  void debug(const std::string& message) const { log(ENG_LOG_DEBUG, message); }
  void info(const std::string& message) const { log(ENG_LOG_INFO, message); }
  void warn(const std::string& message) const { log(ENG_LOG_WARN, message); }
  void set_error(eng_status code, const std::string& message) const {
    api_->set_error(ctx_, code, message.c_str());
  }
  std::string last_error() const {
    const char* m = api_->get_error(ctx_);
    return m != nullptr ? m : "";
  }

  // Throws Error(host message, s) when s is not ENG_OK; `what` names the call when the host set no message.
  void check(eng_status s, const char* what) const {
    if (s == ENG_OK) return;
    std::string message = last_error();
    if (message.empty()) message = std::string(what) + " failed: " + status_name(s);
    throw Error(message, s);
  }

  // ---- tensors -----------------------------------------------------------------------------------------
  Tensor empty(eng_dtype dtype, const std::vector<int64_t>& shape) const {
    eng_tensor out = nullptr;
    check(api_->tensor_empty(ctx_, dtype, ndim_of(shape), shape.data(), &out), "tensor_empty");
    return adopt(out);
  }
  Tensor zeros(eng_dtype dtype, const std::vector<int64_t>& shape) const {
    eng_tensor out = nullptr;
    check(api_->tensor_zeros(ctx_, dtype, ndim_of(shape), shape.data(), &out), "tensor_zeros");
    return adopt(out);
  }
  // Copies `bytes` of contiguous row-major host memory into a new tensor on the context's device.
  Tensor from_host(eng_dtype dtype, const std::vector<int64_t>& shape, const void* data, size_t bytes) const {
    eng_tensor out = nullptr;
    check(api_->tensor_from_host(ctx_, dtype, ndim_of(shape), shape.data(), data, bytes, &out),
          "tensor_from_host");
    return adopt(out);
  }
  template <typename T>
  Tensor from_vector(const std::vector<int64_t>& shape, const std::vector<T>& values) const {
    return from_host(dtype_of<T>::value, shape, values.data(), values.size() * sizeof(T));
  }
  // Copies a tensor (any layout, any device) into `bytes` of contiguous host memory.
  void to_host(const Tensor& t, void* dst, size_t bytes) const {
    check(api_->tensor_to_host(ctx_, t.get(), dst, bytes), "tensor_to_host");
  }
  template <typename T>
  std::vector<T> to_vector(const Tensor& t) const {
    std::vector<T> out(static_cast<size_t>(t.numel()));
    if (t.dtype() != dtype_of<T>::value) {
      throw Error(std::string("to_vector: tensor holds ") + dtype_name(t.dtype()) + ", asked for " +
                  dtype_name(dtype_of<T>::value));
    }
    to_host(t, out.data(), out.size() * sizeof(T));
    return out;
  }
  // Wraps a handle the engine passed in (retains it).
  Tensor borrow(eng_tensor t) const noexcept { return Tensor::borrow(api_, t); }
  // Takes over a reference the caller owns.
  Tensor adopt(eng_tensor t) const noexcept { return Tensor::adopt(api_, t); }

  // ---- device memory (the engine's caching allocator) --------------------------------------------------
  void* device_alloc(size_t bytes) const {
    void* p = nullptr;
    check(api_->device_alloc(ctx_, bytes, &p), "device_alloc");
    return p;
  }
  void device_free(void* p) const noexcept { api_->device_free(ctx_, p); }
  // The device of this call: type, index, multiprocessors, compute capability, memory, name.
  eng_device_properties device_properties() const {
    eng_device_properties p{};
    p.struct_size = sizeof(p);
    check(api_->device_properties(ctx_, &p), "device_properties");
    return p;
  }

  // ---- ops (recorded on the autograd tape when grad_enabled()) -----------------------------------------
  // ids (B,T) i32 -> (B,T,C)
  Tensor embedding(Param table, const Tensor& ids) const {
    return op1(ops()->embedding, "embedding", table.get(), ids.get());
  }
  // x (..., in) -> x W^T + b (..., out); W resolved through the quantizer and PEFT (the linear seam)
  Tensor linear(const Tensor& x, Param weight, Param bias = Param()) const {
    return op1(ops()->linear, "linear", x.get(), weight.get(), bias.get());
  }
  // a (..., M, K), b (..., K, N) -> (..., M, N); trans_a / trans_b take the other layout
  Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false) const {
    return op1(ops()->matmul, "matmul", a.get(), b.get(), int32_t(trans_a), int32_t(trans_b));
  }
  Tensor add(const Tensor& a, const Tensor& b) const { return op1(ops()->add, "add", a.get(), b.get()); }
  Tensor mul(const Tensor& a, const Tensor& b) const { return op1(ops()->mul, "mul", a.get(), b.get()); }
  Tensor scale(const Tensor& x, double s) const { return op1(ops()->scale, "scale", x.get(), s); }
  // x (..., C) * rsqrt(mean(x^2) + eps) * w (C)
  Tensor rms_norm(const Tensor& x, Param weight, double eps) const {
    return op1(ops()->rms_norm, "rms_norm", x.get(), weight.get(), eps);
  }
  // x (B,T,H,D), position_ids (B,T) i32
  Tensor rope(const Tensor& x, const Tensor& position_ids, const eng_rope_config& cfg) const {
    return op1(ops()->rope, "rope", x.get(), position_ids.get(), &cfg);
  }
  // q (B,T,Hq,D), k and v (B,T,Hkv,D) -> (B,T,Hq,D); segment_ids may be empty
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& segment_ids,
                   double softmax_scale, eng_kv_cache kv_cache = nullptr, int32_t layer = 0) const {
    return op1(ops()->attention, "attention", q.get(), k.get(), v.get(), segment_ids.get(), softmax_scale,
               kv_cache, layer);
  }
  Tensor silu(const Tensor& x) const { return op1(ops()->silu, "silu", x.get()); }
  // silu(gate) * up
  Tensor swiglu(const Tensor& gate, const Tensor& up) const {
    return op1(ops()->swiglu, "swiglu", gate.get(), up.get());
  }
  Tensor softmax(const Tensor& x) const { return op1(ops()->softmax, "softmax", x.get()); }
  // logits (N,V), labels (N) i32 -> () f32 = scale * sum of CE over labels != ignore_index
  Tensor cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index, double scale) const {
    return op1(ops()->cross_entropy, "cross_entropy", logits.get(), labels.get(), ignore_index, scale);
  }
  // hidden (N,C) @ weight (V,C)^T -> CE, chunked -> () f32
  Tensor linear_cross_entropy(const Tensor& hidden, Param weight, const Tensor& labels, int64_t ignore_index,
                              double scale) const {
    return op1(ops()->linear_cross_entropy, "linear_cross_entropy", hidden.get(), weight.get(), labels.get(),
               ignore_index, scale);
  }
  Tensor dropout(const Tensor& x, double p) const { return op1(ops()->dropout, "dropout", x.get(), p); }
  Tensor cast(const Tensor& x, eng_dtype dtype) const { return op1(ops()->cast, "cast", x.get(), dtype); }
  // one entry of shape may be -1 (inferred)
  Tensor reshape(const Tensor& x, const std::vector<int64_t>& shape) const {
    return op1(ops()->reshape, "reshape", x.get(), ndim_of(shape), shape.data());
  }
  Tensor transpose(const Tensor& x, int32_t dim0, int32_t dim1) const {
    return op1(ops()->transpose, "transpose", x.get(), dim0, dim1);
  }
  // [start, end) along dim
  Tensor slice(const Tensor& x, int32_t dim, int64_t start, int64_t end) const {
    return op1(ops()->slice, "slice", x.get(), dim, start, end);
  }
  Tensor concat(const std::vector<Tensor>& xs, int32_t dim) const {
    std::vector<eng_tensor> handles;
    handles.reserve(xs.size());
    for (const Tensor& t : xs) handles.push_back(t.get());
    return op1(ops()->concat, "concat", static_cast<int32_t>(handles.size()), handles.data(), dim);
  }
  Tensor contiguous(const Tensor& x) const { return op1(ops()->contiguous, "contiguous", x.get()); }
  // sum of all elements -> () f32
  Tensor sum(const Tensor& x) const { return op1(ops()->sum, "sum", x.get()); }
  // the current value of a parameter as a tensor that carries gradients back to it
  Tensor param(Param p) const { return op1(ops()->param, "param", p.get()); }
  // a registered custom op; returns its n_outputs outputs
  std::vector<Tensor> custom(eng_op_id op, const std::vector<Tensor>& inputs, const void* attrs,
                             int32_t n_outputs) const {
    std::vector<eng_tensor> in;
    in.reserve(inputs.size());
    for (const Tensor& t : inputs) in.push_back(t.get());
    std::vector<eng_tensor> out(static_cast<size_t>(n_outputs), nullptr);
    eng_status s = require(ops()->custom, "custom")(ctx_, op, in.data(), attrs, out.data());
    std::vector<Tensor> result;
    result.reserve(out.size());
    for (eng_tensor t : out) result.push_back(adopt(t));  // released even when the op failed half-way
    check(s, "custom");
    return result;
  }

  // In-place updates, never recorded. dst must be contiguous.
  // dst = a * dst + b * src
  void axpby_(const Tensor& dst, double a, const Tensor& src, double b) const {
    check(require(ops()->axpby_, "axpby_")(ctx_, dst.get(), a, src.get(), b), "axpby_");
  }
  // dst = src (converting dtype)
  void copy_(const Tensor& dst, const Tensor& src) const {
    check(require(ops()->copy_, "copy_")(ctx_, dst.get(), src.get()), "copy_");
  }
  void fill_(const Tensor& dst, double value) const {
    check(require(ops()->fill_, "fill_")(ctx_, dst.get(), value), "fill_");
  }

  // ---- appended in ABI 1.1: elementwise math for device-independent optimizers ---------------------------
  // Each checks the op table's struct_size first and throws ENG_ERR_UNSUPPORTED on an older engine. Binary ops
  // and where broadcast numpy-style (docs/ABI.md "Elementwise math"); recorded when grad_enabled().
  Tensor sqrt(const Tensor& x) const { return op1(ENGINE_SDK_OP_1_1(sqrt), "sqrt", x.get()); }
  Tensor rsqrt(const Tensor& x) const { return op1(ENGINE_SDK_OP_1_1(rsqrt), "rsqrt", x.get()); }
  Tensor div(const Tensor& a, const Tensor& b) const { return op1(ENGINE_SDK_OP_1_1(div), "div", a.get(), b.get()); }
  // -1, 0, +1 (gradient 0)
  Tensor sign(const Tensor& x) const { return op1(ENGINE_SDK_OP_1_1(sign), "sign", x.get()); }
  Tensor abs(const Tensor& x) const { return op1(ENGINE_SDK_OP_1_1(abs), "abs", x.get()); }
  Tensor maximum(const Tensor& a, const Tensor& b) const {
    return op1(ENGINE_SDK_OP_1_1(maximum), "maximum", a.get(), b.get());
  }
  Tensor minimum(const Tensor& a, const Tensor& b) const {
    return op1(ENGINE_SDK_OP_1_1(minimum), "minimum", a.get(), b.get());
  }
  // cond != 0 ? a : b
  Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) const {
    return op1(ENGINE_SDK_OP_1_1(where), "where", cond.get(), a.get(), b.get());
  }
  Tensor pow_scalar(const Tensor& x, double exponent) const {
    return op1(ENGINE_SDK_OP_1_1(pow_scalar), "pow_scalar", x.get(), exponent);
  }
  Tensor clamp(const Tensor& x, double lo, double hi) const {
    return op1(ENGINE_SDK_OP_1_1(clamp), "clamp", x.get(), lo, hi);
  }

  // Multi-tensor in-place updates, never recorded: every list holds one tensor per dst (a length mismatch
  // throws, naming the lengths). dst contiguous f32; sources any floating dtype of dst's shape.
  // dst[i] = a * dst[i] + b * src[i]
  void foreach_axpby_(const std::vector<Tensor>& dst, double a, const std::vector<Tensor>& src, double b) const {
    same_lengths("foreach_axpby_", dst, src, nullptr);
    const auto h = handles(dst), s = handles(src);
    check(ENGINE_SDK_OP_1_1(foreach_axpby_)(ctx_, count(dst), h.data(), a, s.data(), b), "foreach_axpby_");
  }
  // dst[i] = a * dst[i] + c * x[i] * y[i]
  void foreach_addcmul_(const std::vector<Tensor>& dst, double a, const std::vector<Tensor>& x,
                        const std::vector<Tensor>& y, double c) const {
    same_lengths("foreach_addcmul_", dst, x, &y);
    const auto h = handles(dst), hx = handles(x), hy = handles(y);
    check(ENGINE_SDK_OP_1_1(foreach_addcmul_)(ctx_, count(dst), h.data(), a, hx.data(), hy.data(), c),
          "foreach_addcmul_");
  }
  // dst[i] = a * dst[i] + c * x[i] / (sqrt(y_scale * y[i]) + eps)   (sqrt_y false: / (y_scale * y[i] + eps))
  void foreach_addcdiv_(const std::vector<Tensor>& dst, double a, const std::vector<Tensor>& x,
                        const std::vector<Tensor>& y, double c, double y_scale, double eps,
                        bool sqrt_y = true) const {
    same_lengths("foreach_addcdiv_", dst, x, &y);
    const auto h = handles(dst), hx = handles(x), hy = handles(y);
    check(ENGINE_SDK_OP_1_1(foreach_addcdiv_)(ctx_, count(dst), h.data(), a, hx.data(), hy.data(), c, y_scale,
                                              eps, sqrt_y ? 1 : 0),
          "foreach_addcdiv_");
  }
  // dst[i] = a * dst[i] + c * sign(p * x[i] + q * y[i]); y empty: sign(p * x[i])
  void foreach_add_sign_(const std::vector<Tensor>& dst, double a, const std::vector<Tensor>& x, double p,
                         const std::vector<Tensor>& y, double q, double c) const {
    same_lengths("foreach_add_sign_", dst, x, y.empty() ? nullptr : &y);
    const auto h = handles(dst), hx = handles(x), hy = handles(y);
    check(ENGINE_SDK_OP_1_1(foreach_add_sign_)(ctx_, count(dst), h.data(), a, hx.data(), p,
                                               y.empty() ? nullptr : hy.data(), q, c),
          "foreach_add_sign_");
  }

  // ---- custom ops (see custom_op.hpp for a class-based way) --------------------------------------------
  eng_op_id op_register(const eng_custom_op& op) const {
    eng_op_id id = 0;
    check(api_->op_register(ctx_, &op, &id), "op_register");
    return id;
  }

  // ---- the parameter store -----------------------------------------------------------------------------
  Param declare(const ParamDecl& d) const {
    if (d.shape.size() > ENG_MAX_DIMS) {
      throw Error("parameter " + d.name + " has " + std::to_string(d.shape.size()) + " dims; at most " +
                  std::to_string(ENG_MAX_DIMS) + " are supported");
    }
    eng_param_decl decl{};
    decl.struct_size = sizeof(decl);
    decl.name = d.name.c_str();
    decl.ndim = static_cast<int32_t>(d.shape.size());
    for (size_t i = 0; i < d.shape.size(); ++i) decl.shape[i] = d.shape[i];
    decl.dtype = d.dtype;
    decl.role = d.role;
    decl.flags = d.flags;
    decl.init = d.init;
    decl.init_arg = d.init_arg;
    decl.tied_to = d.tied_to.empty() ? nullptr : d.tied_to.c_str();
    eng_param out = nullptr;
    check(api_->param_declare(ctx_, &decl, &out), "param_declare");
    return Param(out);
  }
  int64_t param_count() const { return api_->param_count(ctx_); }
  Param param_at(int64_t index) const { return Param(api_->param_at(ctx_, index)); }
  // Every parameter in declaration order.
  std::vector<Param> params() const {
    std::vector<Param> out;
    int64_t n = param_count();
    out.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out.push_back(param_at(i));
    return out;
  }
  // An empty Param when there is no parameter of that name.
  Param find(const std::string& name) const { return Param(api_->param_find(ctx_, name.c_str())); }
  // Like find, but throws ENG_ERR_NOT_FOUND naming the parameter.
  Param get(const std::string& name) const {
    Param p = find(name);
    if (!p) throw Error("no parameter named '" + name + "' in the parameter store", ENG_ERR_NOT_FOUND);
    return p;
  }
  ParamInfo info(Param p) const {
    eng_param_info raw{};
    raw.struct_size = sizeof(raw);
    check(api_->param_info(p.get(), &raw), "param_info");
    return ParamInfo::from_abi(detail::read_struct(&raw));
  }
  // The stored value (fp32 master for trainable parameters); optimizers update it in place.
  Tensor value(Param p) const {
    eng_tensor out = nullptr;
    check(api_->param_value(ctx_, p.get(), &out), "param_value");
    return adopt(out);
  }
  // The accumulated gradient; an empty Tensor when the parameter has none yet.
  Tensor grad(Param p) const {
    eng_tensor out = nullptr;
    check(api_->param_grad(ctx_, p.get(), &out), "param_grad");
    return adopt(out);
  }
  void set_trainable(Param p, bool trainable) const {
    check(api_->param_set_trainable(ctx_, p.get(), trainable ? 1 : 0), "param_set_trainable");
  }
  // PEFT: route linear(x, base) through this run's PEFT plugin, which receives `cookie` back.
  void peft_attach(Param base, void* cookie) const {
    check(api_->peft_attach(ctx_, base.get(), cookie), "peft_attach");
  }

  // ---- the block seam ----------------------------------------------------------------------------------
  void block_begin(int32_t block) const { check(api_->block_begin(ctx_, block), "block_begin"); }
  void block_end(int32_t block) const { check(api_->block_end(ctx_, block), "block_end"); }

  // ---- random numbers ----------------------------------------------------------------------------------
  uint64_t rng_next_u64() const { return api_->rng_next_u64(ctx_); }

  // ---- state dictionaries ------------------------------------------------------------------------------
  void state_put(eng_state st, const std::string& key, const Tensor& t) const {
    check(api_->state_put(ctx_, st, key.c_str(), t.get()), "state_put");
  }
  // Throws ENG_ERR_NOT_FOUND (with the host's message) when the key is absent.
  Tensor state_get(eng_state st, const std::string& key) const {
    eng_tensor out = nullptr;
    check(api_->state_get(ctx_, st, key.c_str(), &out), "state_get");
    return adopt(out);
  }
  // An empty Tensor when the key is absent.
  Tensor state_try_get(eng_state st, const std::string& key) const {
    eng_tensor out = nullptr;
    eng_status s = api_->state_get(ctx_, st, key.c_str(), &out);
    if (s == ENG_ERR_NOT_FOUND) return Tensor();
    check(s, "state_get");
    return adopt(out);
  }

  // ---- collectives (in place) --------------------------------------------------------------------------
  void all_reduce_sum(const Tensor& t) const { check(api_->all_reduce_sum(ctx_, t.get()), "all_reduce_sum"); }
  // t = sum over a group of a tensor x data parallel mesh (ENG_GROUP_MODEL, ENG_GROUP_DATA; ENG_GROUP_WORLD is
  // all_reduce_sum).
  void all_reduce_sum(const Tensor& t, int32_t group) const {
    if (group == ENG_GROUP_WORLD) return all_reduce_sum(t);
    const auto f = service(offsetof(eng_host_api, group_all_reduce_sum), [&] { return api_->group_all_reduce_sum; },
                           "group_all_reduce_sum");
    check(f(ctx_, t.get(), group), "group_all_reduce_sum");
  }
  void broadcast(const Tensor& t, int32_t root) const {
    check(api_->broadcast(ctx_, t.get(), root), "broadcast");
  }
  // full = concat of every rank's shard along dim 0
  void all_gather(const Tensor& shard, const Tensor& full) const {
    check(api_->all_gather(ctx_, shard.get(), full.get()), "all_gather");
  }
  void reduce_scatter_sum(const Tensor& full, const Tensor& shard) const {
    check(api_->reduce_scatter_sum(ctx_, full.get(), shard.get()), "reduce_scatter_sum");
  }
  void barrier() const { check(api_->barrier(ctx_), "barrier"); }

  // ---- plugin-owned state dictionaries and tensor files (the engine's safetensors reader and writer) ---
  // A new empty dictionary owned by the returned State.
  State state_create() const {
    const auto create = service(
        offsetof(eng_host_api, state_create), [&] { return api_->state_create; }, "state_create");
    eng_state st = nullptr;
    check(create(ctx_, &st), "state_create");
    return State(api_, st);
  }
  // Writes every entry of `st` to `path` atomically, byte-identical to Python's safetensors.save_file for
  // the same tensors; `metadata` becomes "__metadata__" (e.g. {{"format", "pt"}}).
  void write_safetensors(const std::string& path, const State& st,
                         const std::map<std::string, std::string>& metadata = {}) const {
    write_safetensors(path, st.get(), metadata);
  }
  void write_safetensors(const std::string& path, eng_state st,
                         const std::map<std::string, std::string>& metadata = {}) const {
    const auto write = service(
        offsetof(eng_host_api, safetensors_write), [&] { return api_->safetensors_write; },
        "safetensors_write");
    const std::string meta = nlohmann::json(metadata).dump();
    check(write(ctx_, path.c_str(), st, metadata.empty() ? nullptr : meta.c_str()), "safetensors_write");
  }
  // Reads and validates a .safetensors file: tensors on this context's device in their stored dtype.
  State read_safetensors(const std::string& path) const {
    const auto read = service(
        offsetof(eng_host_api, safetensors_read), [&] { return api_->safetensors_read; }, "safetensors_read");
    eng_state st = nullptr;
    const eng_status s = read(ctx_, path.c_str(), &st);
    State result(api_, st);
    check(s, "safetensors_read");
    return result;
  }

  // ---- appended in ABI 1.1 ------------------------------------------------------------------------------
  // The engine's one target matcher (docs/PLUGINS.md, "Targets"): does module or parameter `name` match the
  // target list `spec_json` ("all-linear", a regular expression string, or a list of names, as JSON)?
  bool target_match(const std::string& spec_json, const std::string& name) const {
    const auto match = service(
        offsetof(eng_host_api, target_match), [&] { return api_->target_match; }, "target_match");
    int32_t out = 0;
    check(match(ctx_, spec_json.c_str(), name.c_str(), &out), "target_match");
    return out != 0;
  }
  // Writes `text` to `path` atomically (temporary file, fsync, rename); the folder must exist.
  void write_file(const std::string& path, const std::string& text) const {
    const auto write = service(
        offsetof(eng_host_api, file_write), [&] { return api_->file_write; }, "file_write");
    check(write(ctx_, path.c_str(), text.data(), text.size()), "file_write");
  }
  // A JSON document (adapter_config.json, ...), indented by 2 and ending in a newline, written atomically.
  void write_json(const std::string& path, const nlohmann::json& doc) const { write_file(path, doc.dump(2) + "\n"); }

  // ---- appended in ABI 1.1: parameter placement (zero3/fsdp) ----------------------------------------------
  // (a strategy's setup) keep root p as flat shards of `shard` elements per rank (0: whole); see engine.h.
  void param_set_local(Param p, int64_t shard) const {
    const auto f = service(
        offsetof(eng_host_api, param_set_local), [&] { return api_->param_set_local; }, "param_set_local");
    check(f(ctx_, p.get(), shard), "param_set_local");
  }
  // (a strategy's setup) keep the roots `ps` together as one flat buffer sharded evenly over the ranks (fsdp);
  // gather, release and reduce_grad of any of them then act on all; see engine.h.
  void param_set_local_flat(const std::vector<Param>& ps) const {
    const auto f = service(
        offsetof(eng_host_api, param_set_local_flat), [&] { return api_->param_set_local_flat; },
        "param_set_local_flat");
    std::vector<eng_param> raw;
    raw.reserve(ps.size());
    for (const Param& p : ps) raw.push_back(p.get());
    check(f(ctx_, raw.data(), static_cast<int64_t>(raw.size())), "param_set_local_flat");
  }
  // (a strategy's setup) keep root p as this rank's 1/world slice along dim 0 or 1 (tensor parallelism); the
  // linear seam adds the collectives the split implies. See engine.h.
  void param_set_split(Param p, int32_t dim) const {
    const auto f =
        service(offsetof(eng_host_api, param_set_split), [&] { return api_->param_set_split; }, "param_set_split");
    check(f(ctx_, p.get(), dim), "param_set_split");
  }
  // (a strategy's setup) only rank `holder` of the model group keeps root p (pipeline parallelism: the stage
  // that runs p's block); the others never allocate it. See engine.h.
  void param_set_holder(Param p, int32_t holder) const {
    const auto f = service(
        offsetof(eng_host_api, param_set_holder), [&] { return api_->param_set_holder; }, "param_set_holder");
    check(f(ctx_, p.get(), holder), "param_set_holder");
  }
  // Collective: p's full value becomes valid (an all-gather of the shards).
  void param_gather(Param p) const {
    const auto f = service(offsetof(eng_host_api, param_gather), [&] { return api_->param_gather; }, "param_gather");
    check(f(ctx_, p.get()), "param_gather");
  }
  // p's full value gives its memory back (its tensors stay valid handles until the next gather refills them).
  void param_release(Param p) const {
    const auto f =
        service(offsetof(eng_host_api, param_release), [&] { return api_->param_release; }, "param_release");
    check(f(ctx_, p.get()), "param_release");
  }
  // Collective: the accumulated gradient of p, summed over ranks, is added into its local shard (and freed).
  void param_reduce_grad(Param p) const {
    const auto f = service(
        offsetof(eng_host_api, param_reduce_grad), [&] { return api_->param_reduce_grad; }, "param_reduce_grad");
    check(f(ctx_, p.get()), "param_reduce_grad");
  }
  // What a sharding-capable optimizer steps: the local shard and its gradient (whole value and gradient of a
  // parameter that is not sharded). On an engine older than the placement entries: value(p) and grad(p).
  struct Local {
    Tensor value;
    Tensor grad;  // empty when no gradient arrived yet
  };
  Local local(Param p) const {
    if (api_->struct_size < offsetof(eng_host_api, param_local) + sizeof(void*) || api_->param_local == nullptr)
      return {value(p), grad(p)};
    eng_tensor v = nullptr, g = nullptr;
    const eng_status st = api_->param_local(ctx_, p.get(), &v, &g);
    Local out{adopt(v), adopt(g)};
    check(st, "param_local");
    return out;
  }

 private:
  friend class NoGrad;

  // An entry appended to the host table, checked against the table's struct_size before it is read
  // (docs/ABI.md, "Tables"): service(offsetof(eng_host_api, x), [&] { return api_->x; }, "x").
  template <typename Read>
  auto service(size_t offset, Read read, const char* name) const -> decltype(read()) {
    decltype(read()) fn = offset + sizeof(void*) <= api_->struct_size ? read() : nullptr;
    if (fn == nullptr) {
      throw Error(std::string("this engine does not provide the host service '") + name +
                      "'; it is older than the SDK the plugin was built with",
                  ENG_ERR_UNSUPPORTED);
    }
    return fn;
  }
  const eng_op_table* ops() const {
    if (api_->ops == nullptr) throw Error("the engine provided no op table", ENG_ERR_INTERNAL);
    return api_->ops;
  }
  // An op appended to the op table, checked against its struct_size (ENGINE_SDK_OP_1_1 below).
  template <typename Read>
  auto new_op(size_t offset, Read read, const char* name) const -> decltype(read()) {
    const eng_op_table* t = ops();
    decltype(read()) fn = offset + sizeof(void*) <= t->struct_size ? read() : nullptr;
    if (fn == nullptr) {
      throw Error(std::string("this engine does not provide the op '") + name +
                      "' (ABI 1.1 elementwise math); it is older than the SDK the plugin was built with",
                  ENG_ERR_UNSUPPORTED);
    }
    return fn;
  }
  static std::vector<eng_tensor> handles(const std::vector<Tensor>& ts) {
    std::vector<eng_tensor> out;
    out.reserve(ts.size());
    for (const Tensor& t : ts) out.push_back(t.get());
    return out;
  }
  static int32_t count(const std::vector<Tensor>& ts) {
    if (ts.size() > static_cast<size_t>(INT32_MAX)) throw Error("a foreach list holds more than 2^31 tensors");
    return static_cast<int32_t>(ts.size());
  }
  static void same_lengths(const char* op, const std::vector<Tensor>& dst, const std::vector<Tensor>& x,
                           const std::vector<Tensor>* y) {
    if (x.size() == dst.size() && (y == nullptr || y->size() == dst.size())) return;
    std::string m = std::string(op) + ": the lists differ in length: dst has " + std::to_string(dst.size()) +
                    " tensors, x has " + std::to_string(x.size());
    if (y != nullptr) m += ", y has " + std::to_string(y->size());
    throw Error(m + "; pass one tensor of each list per dst", ENG_ERR_INVALID_ARGUMENT);
  }
  template <typename Fn>
  Fn require(Fn fn, const char* name) const {
    if (fn == nullptr)
      throw Error(std::string("the engine does not provide the op '") + name + "'", ENG_ERR_UNSUPPORTED);
    return fn;
  }
  // Calls an op of the form op(ctx, args..., eng_tensor* out) and adopts its output.
  template <typename Fn, typename... Args>
  Tensor op1(Fn fn, const char* name, Args... args) const {
    eng_tensor out = nullptr;
    eng_status s = require(fn, name)(ctx_, args..., &out);
    Tensor result = adopt(out);
    check(s, name);
    return result;
  }
  static int32_t ndim_of(const std::vector<int64_t>& shape) {
    if (shape.size() > ENG_MAX_DIMS) throw Error("a tensor shape has more than ENG_MAX_DIMS dims");
    return static_cast<int32_t>(shape.size());
  }

  const eng_host_api* api_;
  const eng_ctx* ctx_;
};

#undef ENGINE_SDK_OP_1_1

// A scope in which the host's ops record nothing on the autograd tape: it points `host` at a copy of its
// context with grad_enabled = 0 and restores the original when it ends.
//   { NoGrad no_grad(host); Tensor m = host.scale(g, 0.9); }
// The copy lives on the heap, not inside this object: `host` usually outlives the scope (a reference
// parameter), and GCC 12 rejects storing the address of a local into it (-Wdangling-pointer, an error under
// -Werror) even though the destructor puts the original back.
class NoGrad {
 public:
  explicit NoGrad(Host& host)
      : host_(host), saved_(host.ctx_), copy_(new eng_ctx(detail::read_struct(host.ctx_))) {
    copy_->struct_size = host.ctx_->struct_size < sizeof(eng_ctx) ? host.ctx_->struct_size
                                                                  : static_cast<uint32_t>(sizeof(eng_ctx));
    copy_->grad_enabled = 0;
    host_.ctx_ = copy_.get();
  }
  ~NoGrad() { host_.ctx_ = saved_; }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  Host& host_;
  const eng_ctx* saved_;
  std::unique_ptr<eng_ctx> copy_;
};

// A decoder block of a model's forward: block_begin now, block_end when the scope ends normally (not when an
// exception is unwinding it; the engine abandons the forward then).
//   for (int32_t i = 0; i < n_layers; ++i) { Block block(host, i); x = layer(host, i, x); }
class Block {
 public:
  Block(const Host& host, int32_t index)
      : host_(host), index_(index), exceptions_(std::uncaught_exceptions()) {
    host_.block_begin(index_);
  }
  ~Block() noexcept(false) {
    if (std::uncaught_exceptions() == exceptions_) host_.block_end(index_);
  }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;

 private:
  const Host& host_;
  int32_t index_;
  int exceptions_;
};

}  // namespace engine::sdk
