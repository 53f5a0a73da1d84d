// tiny_llama: a llama-shaped causal decoder as a model plugin against the raw C ABI (engine/abi/model.h), for
// the host-table tests. Per layer: rms_norm -> q/k/v linears -> rope -> causal GQA attention -> o linear ->
// residual -> rms_norm -> gate/up linears -> swiglu -> down linear -> residual; each layer wrapped in
// block_begin/block_end. Parameters use Hugging Face Llama names. Only the op table computes.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "engine/abi/model.h"

namespace {

struct Config {
  int64_t vocab = 64, hidden = 32, inter = 64;
  int32_t layers = 2, heads = 4, kv_heads = 2, head_dim = 8;
  double eps = 1e-5, theta = 10000.0;
  bool tie = false;
};

// The number after "key": in a flat JSON object (the tests' configs are flat); def when absent.
double json_number(const char* json, const char* key, double def) {
  if (json == nullptr) return def;
  const std::string k = std::string("\"") + key + "\"";
  const char* p = std::strstr(json, k.c_str());
  if (p == nullptr) return def;
  p = std::strchr(p + k.size(), ':');
  if (p == nullptr) return def;
  ++p;
  while (*p == ' ') ++p;
  if (std::strncmp(p, "true", 4) == 0) return 1;
  if (std::strncmp(p, "false", 5) == 0) return 0;
  return std::strtod(p, nullptr);
}

struct Layer {
  eng_param in_norm, q, k, v, o, post_norm, gate, up, down;
};

struct Model {
  const eng_host_api* host;
  Config cfg;
  eng_param embed = nullptr, norm = nullptr, lm_head = nullptr;
  std::vector<Layer> layers;
  std::string lm_head_name;
};

// Owns one tensor reference.
struct T {
  const eng_host_api* host;
  eng_tensor t = nullptr;
  explicit T(const eng_host_api* h) : host(h) {}
  ~T() { host->tensor_release(t); }
  T(const T&) = delete;
  T& operator=(const T&) = delete;
  eng_tensor* out() {
    host->tensor_release(t);
    t = nullptr;
    return &t;
  }
  eng_tensor take() {
    eng_tensor r = t;
    t = nullptr;
    return r;
  }
};

#define TRY(expr)                  \
  do {                             \
    eng_status st_ = (expr);       \
    if (st_ != ENG_OK) return st_; \
  } while (0)

eng_status fail(const eng_host_api* host, const eng_ctx* ctx, eng_status code, const char* msg) {
  host->set_error(ctx, code, msg);
  return code;
}

eng_status declare(Model* m, const eng_ctx* ctx, const std::string& name, std::vector<int64_t> shape,
                   eng_param_role role, eng_init_kind init, double arg, eng_param* out,
                   const char* tied_to = nullptr) {
  eng_param_decl d;
  std::memset(&d, 0, sizeof d);
  d.struct_size = sizeof d;
  d.name = name.c_str();
  d.ndim = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) d.shape[i] = shape[i];
  d.dtype = ENG_F32;
  d.role = role;
  d.flags = ENG_PARAM_TRAINABLE | (role == ENG_ROLE_NORM ? ENG_PARAM_NO_DECAY : 0u);
  if (tied_to != nullptr) d.flags |= ENG_PARAM_TIED;
  d.init = init;
  d.init_arg = arg;
  d.tied_to = tied_to;
  return m->host->param_declare(ctx, &d, out);
}

eng_status create(const eng_host_api* host, const eng_ctx* ctx, const char* hf_config_json, const char*,
                  void** self) {
  Model* m = new (std::nothrow) Model;
  if (m == nullptr) return fail(host, ctx, ENG_ERR_OUT_OF_MEMORY, "tiny_llama: out of memory");
  m->host = host;
  Config& c = m->cfg;
  c.vocab = static_cast<int64_t>(json_number(hf_config_json, "vocab_size", static_cast<double>(c.vocab)));
  c.hidden = static_cast<int64_t>(json_number(hf_config_json, "hidden_size", static_cast<double>(c.hidden)));
  c.inter =
      static_cast<int64_t>(json_number(hf_config_json, "intermediate_size", static_cast<double>(c.inter)));
  c.layers = static_cast<int32_t>(json_number(hf_config_json, "num_hidden_layers", c.layers));
  c.heads = static_cast<int32_t>(json_number(hf_config_json, "num_attention_heads", c.heads));
  c.kv_heads = static_cast<int32_t>(json_number(hf_config_json, "num_key_value_heads", c.kv_heads));
  c.eps = json_number(hf_config_json, "rms_norm_eps", c.eps);
  c.theta = json_number(hf_config_json, "rope_theta", c.theta);
  c.tie = json_number(hf_config_json, "tie_word_embeddings", 0) != 0;
  if (c.heads <= 0 || c.kv_heads <= 0 || c.hidden % c.heads != 0 || c.heads % c.kv_heads != 0) {
    delete m;
    return fail(host, ctx, ENG_ERR_INVALID_ARGUMENT,
                "tiny_llama: hidden_size must divide by num_attention_heads, which must divide by "
                "num_key_value_heads");
  }
  c.head_dim = static_cast<int32_t>(c.hidden / c.heads);
  *self = m;
  return ENG_OK;
}

void destroy(void* self) { delete static_cast<Model*>(self); }

eng_status info(void* self, eng_model_info* out) {
  Model* m = static_cast<Model*>(self);
  eng_model_info i;
  std::memset(&i, 0, sizeof i);
  i.struct_size = sizeof i;
  i.n_layers = m->cfg.layers;
  i.vocab_size = m->cfg.vocab;
  i.hidden_size = m->cfg.hidden;
  i.intermediate_size = m->cfg.inter;
  i.n_heads = m->cfg.heads;
  i.n_kv_heads = m->cfg.kv_heads;
  i.head_dim = m->cfg.head_dim;
  i.tie_word_embeddings = m->cfg.tie ? 1 : 0;
  i.max_position_embeddings = 4096;
  i.lm_head_param = m->lm_head_name.c_str();
  i.architecture = "LlamaForCausalLM";
  i.bos_token_id = -1;
  i.eos_token_id = -1;
  std::memcpy(out, &i, out->struct_size < sizeof i ? out->struct_size : sizeof i);
  return ENG_OK;
}

eng_status declare_params(void* self, const eng_ctx* ctx) {
  Model* m = static_cast<Model*>(self);
  const Config& c = m->cfg;
  const eng_host_api* h = m->host;
  const int64_t C = c.hidden, Dq = c.heads * c.head_dim, Dkv = c.kv_heads * c.head_dim;
  TRY(declare(m, ctx, "model.embed_tokens.weight", {c.vocab, C}, ENG_ROLE_EMBEDDING, ENG_INIT_NORMAL, 0.5,
              &m->embed));
  m->layers.resize(static_cast<size_t>(c.layers));
  for (int32_t l = 0; l < c.layers; ++l) {
    Layer& L = m->layers[static_cast<size_t>(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    TRY(h->block_begin(ctx, l));
    TRY(declare(m, ctx, p + "input_layernorm.weight", {C}, ENG_ROLE_NORM, ENG_INIT_ONES, 0, &L.in_norm));
    TRY(declare(m, ctx, p + "self_attn.q_proj.weight", {Dq, C}, ENG_ROLE_LINEAR, ENG_INIT_KAIMING_UNIFORM, 5,
                &L.q));
    TRY(declare(m, ctx, p + "self_attn.k_proj.weight", {Dkv, C}, ENG_ROLE_LINEAR, ENG_INIT_KAIMING_UNIFORM, 5,
                &L.k));
    TRY(declare(m, ctx, p + "self_attn.v_proj.weight", {Dkv, C}, ENG_ROLE_LINEAR, ENG_INIT_KAIMING_UNIFORM, 5,
                &L.v));
    TRY(declare(m, ctx, p + "self_attn.o_proj.weight", {C, Dq}, ENG_ROLE_LINEAR, ENG_INIT_KAIMING_UNIFORM, 5,
                &L.o));
    TRY(declare(m, ctx, p + "post_attention_layernorm.weight", {C}, ENG_ROLE_NORM, ENG_INIT_ONES, 0,
                &L.post_norm));
    TRY(declare(m, ctx, p + "mlp.gate_proj.weight", {c.inter, C}, ENG_ROLE_LINEAR, ENG_INIT_KAIMING_UNIFORM,
                5, &L.gate));
    TRY(declare(m, ctx, p + "mlp.up_proj.weight", {c.inter, C}, ENG_ROLE_LINEAR, ENG_INIT_KAIMING_UNIFORM, 5,
                &L.up));
    TRY(declare(m, ctx, p + "mlp.down_proj.weight", {C, c.inter}, ENG_ROLE_LINEAR, ENG_INIT_KAIMING_UNIFORM,
                5, &L.down));
    TRY(h->block_end(ctx, l));
  }
  TRY(declare(m, ctx, "model.norm.weight", {C}, ENG_ROLE_NORM, ENG_INIT_ONES, 0, &m->norm));
  if (c.tie) {
    m->lm_head_name = "model.embed_tokens.weight";
    m->lm_head = m->embed;
  } else {
    m->lm_head_name = "lm_head.weight";
    TRY(declare(m, ctx, "lm_head.weight", {c.vocab, C}, ENG_ROLE_LINEAR, ENG_INIT_KAIMING_UNIFORM, 5,
                &m->lm_head));
  }
  return ENG_OK;
}

// x (B,T,F) -> (B,T,H,D)
eng_status split_heads(const eng_host_api* h, const eng_ctx* ctx, eng_tensor x, int64_t B, int64_t Tn,
                       int64_t H, int64_t D, eng_tensor* out) {
  const int64_t shape[4] = {B, Tn, H, D};
  return h->ops->reshape(ctx, x, 4, shape, out);
}

eng_status layer_forward(Model* m, const eng_ctx* ctx, const eng_batch* batch, int32_t l, eng_tensor x,
                         eng_tensor* out) {
  const eng_host_api* h = m->host;
  const eng_op_table* ops = h->ops;
  const Config& c = m->cfg;
  const Layer& L = m->layers[static_cast<size_t>(l)];
  const int64_t B = h->tensor_dim(x, 0), Tn = h->tensor_dim(x, 1);
  // attention: x (B,T,C)
  T n1(h), q(h), k(h), v(h), q4(h), k4(h), v4(h), qr(h), kr(h), a(h), a3(h), o(h), h1(h);
  TRY(ops->rms_norm(ctx, x, L.in_norm, c.eps, n1.out()));
  TRY(ops->linear(ctx, n1.t, L.q, nullptr, q.out()));  // (B,T,Hq*D)
  TRY(ops->linear(ctx, n1.t, L.k, nullptr, k.out()));  // (B,T,Hkv*D)
  TRY(ops->linear(ctx, n1.t, L.v, nullptr, v.out()));
  TRY(split_heads(h, ctx, q.t, B, Tn, c.heads, c.head_dim, q4.out()));
  TRY(split_heads(h, ctx, k.t, B, Tn, c.kv_heads, c.head_dim, k4.out()));
  TRY(split_heads(h, ctx, v.t, B, Tn, c.kv_heads, c.head_dim, v4.out()));
  eng_rope_config rope;
  std::memset(&rope, 0, sizeof rope);
  rope.struct_size = sizeof rope;
  rope.theta = c.theta;
  rope.rotary_dim = c.head_dim;
  rope.scaling = ENG_ROPE_NONE;
  TRY(ops->rope(ctx, q4.t, batch->position_ids, &rope, qr.out()));
  TRY(ops->rope(ctx, k4.t, batch->position_ids, &rope, kr.out()));
  TRY(ops->attention(ctx, qr.t, kr.t, v4.t, batch->segment_ids,
                     1.0 / std::sqrt(static_cast<double>(c.head_dim)), batch->kv_cache, l,
                     a.out()));  // (B,T,Hq,D)
  const int64_t flat[3] = {B, Tn, static_cast<int64_t>(c.heads) * c.head_dim};
  TRY(ops->reshape(ctx, a.t, 3, flat, a3.out()));
  TRY(ops->linear(ctx, a3.t, L.o, nullptr, o.out()));
  TRY(ops->add(ctx, x, o.t, h1.out()));
  // MLP
  T n2(h), g(h), u(h), s(h), d(h);
  TRY(ops->rms_norm(ctx, h1.t, L.post_norm, c.eps, n2.out()));
  TRY(ops->linear(ctx, n2.t, L.gate, nullptr, g.out()));
  TRY(ops->linear(ctx, n2.t, L.up, nullptr, u.out()));
  TRY(ops->swiglu(ctx, g.t, u.t, s.out()));
  TRY(ops->linear(ctx, s.t, L.down, nullptr, d.out()));
  return ops->add(ctx, h1.t, d.t, out);
}

eng_status forward(void* self, const eng_ctx* ctx, const eng_batch* batch, eng_tensor* hidden) {
  Model* m = static_cast<Model*>(self);
  const eng_host_api* h = m->host;
  *hidden = nullptr;
  if (batch == nullptr || batch->input_ids == nullptr || batch->position_ids == nullptr)
    return fail(h, ctx, ENG_ERR_INVALID_ARGUMENT, "tiny_llama: the batch needs input_ids and position_ids");
  T x(h);
  TRY(h->ops->embedding(ctx, m->embed, batch->input_ids, x.out()));  // (B,T,C)
  for (int32_t l = 0; l < m->cfg.layers; ++l) {
    TRY(h->block_begin(ctx, l));
    T next(h);
    eng_status st = layer_forward(m, ctx, batch, l, x.t, next.out());
    if (st != ENG_OK) return st;
    TRY(h->block_end(ctx, l));
    std::swap(x.t, next.t);
  }
  return h->ops->rms_norm(ctx, x.t, m->norm, m->cfg.eps, hidden);
}

const eng_model_vtable kVtable = {
    sizeof(eng_model_vtable), create, destroy, info, declare_params, forward, nullptr, /*forward_blocks=*/nullptr,
};

}  // namespace

extern "C" ENG_PLUGIN_EXPORT eng_status engine_plugin_negotiate(const eng_negotiate_request* req,
                                                                eng_plugin_descriptor* out) {
  if (req == nullptr || out == nullptr) return ENG_ERR_INVALID_ARGUMENT;
  out->abi_version = ENG_ABI_VERSION;
  if (ENG_ABI_MAJOR_OF(req->host_abi_max) != ENG_ABI_VERSION_MAJOR || req->host_abi_max < ENG_ABI_VERSION ||
      req->host_abi_min > ENG_ABI_VERSION)
    return ENG_ERR_VERSION;
  out->kind = ENG_KIND_MODEL;
  out->name = "tiny_llama_test";
  out->version = "0.1.0";
  out->description = "test-only llama-shaped decoder built through the raw C op table";
  out->options_schema_json = "{\"type\":\"object\",\"properties\":{}}";
  out->capabilities = ENG_CAP_DEVICE_CPU | ENG_MODEL_CAP_KV_CACHE | ENG_MODEL_CAP_PACKING;
  out->vtable = &kVtable;
  return ENG_OK;
}
