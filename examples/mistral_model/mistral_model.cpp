// mistral: Hugging Face MistralForCausalLM checkpoints (model_type "mistral") as an out-of-tree model plugin,
// written against the installed engine SDK alone (docs/PLUGINS.md, "Model").
//
//   x = embed_tokens[ids]                                              (B,T,C)
//   for each layer i, inside Block(i):
//     h = rms_norm(x, input_layernorm)
//     q = linear(h, q_proj) (B,T,Hq,D);  k, v = linear(h, k_proj / v_proj) (B,T,Hkv,D)    no biases
//     q, k = rope(q, k, position_ids)                                  default RoPE, rope_theta
//     a = attention(q, k, v)                                           causal GQA, sliding window W
//     x = x + linear(a, o_proj);  h = rms_norm(x, post_attention_layernorm)
//     x = x + linear(swiglu(linear(h, gate_proj), linear(h, up_proj)), down_proj)
//   return rms_norm(x, model.norm)                                     the engine applies lm_head
//
// Sliding-window attention, honestly: a query at position p sees keys at positions p - W + 1 .. p of its own
// sample. Positions restart at 0 for every packed sample, so the window changes nothing unless some
// position reaches W; then full causal attention and the window differ and this plugin runs its own op,
// mistral.sliding_window_attention (sliding_window_attention.hpp, a CPU kernel with forward and backward,
// registered through host->op_register). Otherwise (sliding_window null, or every position < W, e.g.
// data.max_seq_len <= W) it uses the engine's built-in attention, on any device, since the two are identical
// there. A batch whose window bites on CUDA, and generation past W tokens (the KV cache holds every key),
// are refused with what to change.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/cpp/model.hpp"
#include "mistral_config.hpp"
#include "sliding_window_attention.hpp"

namespace {

using engine::sdk::Error;
using engine::sdk::Host;
using engine::sdk::Param;
using engine::sdk::ParamDecl;
using engine::sdk::Tensor;

constexpr char kSchema[] = R"json({
  "type": "object",
  "properties": {
    "dtype": {"type": "string", "enum": ["auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16"], "default": "auto",
              "description": "dtype of the weights in the parameter store; auto: float32 on the CPU, the checkpoint's torch_dtype on CUDA"}
  },
  "additionalProperties": false
})json";

class Mistral : public engine::sdk::Model {
 public:
  Mistral(Host& host, const std::string& hf_config_json, const std::string& options_json)
      : config_(mistral::parse_mistral_config(hf_config_json)) {
    dtype_ = host.on_cuda() ? config_.checkpoint_dtype : ENG_F32;
    const nlohmann::json o =
        nlohmann::json::parse(options_json.empty() ? "{}" : options_json, nullptr, false);
    if (!o.is_object()) throw Error("mistral: the [model] options must be a table");
    for (auto it = o.begin(); it != o.end(); ++it)
      if (it.key() != "dtype")
        throw Error("mistral: unknown option '" + it.key() + "' in [model]; known options: dtype");
    const std::string d = o.value("dtype", std::string("auto"));
    if (d == "float32" || d == "fp32")
      dtype_ = ENG_F32;
    else if (d == "bfloat16" || d == "bf16")
      dtype_ = ENG_BF16;
    else if (d == "float16" || d == "fp16")
      dtype_ = ENG_F16;
    else if (d != "auto")
      throw Error("mistral: option dtype = '" + d + "'; use auto, float32, bfloat16 or float16");
    if (config_.sliding_window)
      host.info("mistral: sliding_window " + std::to_string(*config_.sliding_window) +
                " (the built-in attention while every position is below it, the plugin's CPU kernel beyond)");
  }

  eng_model_info info() override {
    eng_model_info m{};
    m.struct_size = sizeof(m);
    m.n_layers = config_.n_layers;
    m.vocab_size = config_.vocab_size;
    m.hidden_size = config_.hidden_size;
    m.intermediate_size = config_.intermediate_size;
    m.n_heads = config_.n_heads;
    m.n_kv_heads = config_.n_kv_heads;
    m.head_dim = config_.head_dim;
    m.tie_word_embeddings = config_.tie_word_embeddings ? 1 : 0;
    m.max_position_embeddings = config_.max_position_embeddings;
    m.lm_head_param = config_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    m.architecture = config_.architecture.c_str();
    m.bos_token_id = config_.bos_token_id;
    m.eos_token_id = config_.eos_token_id;
    return m;
  }

  // The parameters under their Hugging Face names, in the order of transformers' state dict; each layer's
  // inside that layer's block. Shapes: C hidden, I intermediate, V vocabulary, Hq/Hkv heads, D head_dim.
  void declare_params(Host& host) override {
    const int64_t C = config_.hidden_size, I = config_.intermediate_size, V = config_.vocab_size;
    const int64_t q_out = int64_t{config_.n_heads} * config_.head_dim,
                  kv_out = int64_t{config_.n_kv_heads} * config_.head_dim;
    const double std_ = config_.initializer_range;  // used only where no checkpoint gives the value
    auto linear = [&](const std::string& name, int64_t out, int64_t in) {
      return host.declare(
          ParamDecl(name, {out, in}, dtype_, ENG_ROLE_LINEAR, ENG_PARAM_TRAINABLE, ENG_INIT_NORMAL, std_));
    };
    auto norm = [&](const std::string& name) {
      return host.declare(ParamDecl(name, {C}, dtype_, ENG_ROLE_NORM,
                                    ENG_PARAM_TRAINABLE | ENG_PARAM_NO_DECAY, ENG_INIT_ONES));
    };
    embed_tokens_ = host.declare(ParamDecl("model.embed_tokens.weight", {V, C}, dtype_, ENG_ROLE_EMBEDDING,
                                           ENG_PARAM_TRAINABLE, ENG_INIT_NORMAL, std_));
    layers_.assign(static_cast<size_t>(config_.n_layers), Layer{});
    for (int32_t i = 0; i < config_.n_layers; ++i) {
      engine::sdk::Block scope(host, i);
      const std::string p = "model.layers." + std::to_string(i) + ".";
      Layer& L = layers_[static_cast<size_t>(i)];
      L.q_proj = linear(p + "self_attn.q_proj.weight", q_out, C);   // (Hq*D, C)
      L.k_proj = linear(p + "self_attn.k_proj.weight", kv_out, C);  // (Hkv*D, C)
      L.v_proj = linear(p + "self_attn.v_proj.weight", kv_out, C);  // (Hkv*D, C)
      L.o_proj = linear(p + "self_attn.o_proj.weight", C, q_out);   // (C, Hq*D)
      L.gate_proj = linear(p + "mlp.gate_proj.weight", I, C);       // (I, C)
      L.up_proj = linear(p + "mlp.up_proj.weight", I, C);           // (I, C)
      L.down_proj = linear(p + "mlp.down_proj.weight", C, I);       // (C, I)
      L.input_layernorm = norm(p + "input_layernorm.weight");       // (C)
      L.post_attention_layernorm = norm(p + "post_attention_layernorm.weight");
    }
    norm_ = norm("model.norm.weight");
    if (!config_.tie_word_embeddings) linear("lm_head.weight", V, C);  // (V, C); the engine applies it
  }

  Tensor forward(Host& host, const engine::sdk::Batch& batch) override {
    if (layers_.empty()) throw Error("mistral: forward called before declare_params", ENG_ERR_INTERNAL);
    if (!batch.input_ids || batch.input_ids.ndim() != 2 || !batch.position_ids)
      throw Error("mistral: forward needs (B,T) input_ids and position_ids", ENG_ERR_INVALID_ARGUMENT);
    const int64_t B = batch.input_ids.dim(0), T = batch.input_ids.dim(1);
    const int64_t Hq = config_.n_heads, Hkv = config_.n_kv_heads, D = config_.head_dim;
    const double softmax_scale = 1.0 / std::sqrt(static_cast<double>(D));
    eng_rope_config rope{};
    rope.struct_size = sizeof(rope);
    rope.theta = config_.rope_theta;
    rope.rotary_dim = config_.head_dim;
    rope.scaling = ENG_ROPE_NONE;
    rope.factor = 1.0;
    const bool windowed = window_bites(host, batch);
    Tensor seg = batch.segment_ids;
    if (windowed && !seg) seg = host.zeros(ENG_I32, {B, T});  // one segment per row

    Tensor x = host.embedding(embed_tokens_, batch.input_ids);  // (B,T,C)
    for (int32_t i = 0; i < config_.n_layers; ++i) {
      const Layer& L = layers_[static_cast<size_t>(i)];
      engine::sdk::Block block(host, i);
      Tensor h = host.rms_norm(x, L.input_layernorm, config_.rms_norm_eps);  // (B,T,C)
      Tensor q = host.rope(host.reshape(host.linear(h, L.q_proj), {B, T, Hq, D}), batch.position_ids, rope);
      Tensor k = host.rope(host.reshape(host.linear(h, L.k_proj), {B, T, Hkv, D}), batch.position_ids, rope);
      Tensor v = host.reshape(host.linear(h, L.v_proj), {B, T, Hkv, D});
      Tensor a = windowed ? windowed_attention(host, q, k, v, seg, softmax_scale)
                          : host.attention(q, k, v, batch.segment_ids, softmax_scale, batch.kv_cache,
                                           i);                                  // (B,T,Hq,D)
      x = host.add(x, host.linear(host.reshape(a, {B, T, Hq * D}), L.o_proj));  // (B,T,C)
      h = host.rms_norm(x, L.post_attention_layernorm, config_.rms_norm_eps);
      x = host.add(
          x, host.linear(host.swiglu(host.linear(h, L.gate_proj), host.linear(h, L.up_proj)), L.down_proj));
    }
    return host.rms_norm(x, norm_, config_.rms_norm_eps);  // (B,T,C)
  }

 private:
  struct Layer {
    Param q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, input_layernorm,
        post_attention_layernorm;
  };

  // Whether sliding_window changes this batch's attention: some position reaches W. T <= W settles it
  // without reading the positions (in training no position exceeds T - 1).
  bool window_bites(Host& host, const engine::sdk::Batch& batch) const {
    if (!config_.sliding_window) return false;
    const int64_t W = *config_.sliding_window, T = batch.input_ids.dim(1);
    if (!batch.kv_cache && T <= W) return false;
    int32_t top = -1;
    for (int32_t p : host.to_vector<int32_t>(batch.position_ids)) top = std::max(top, p);
    if (top < W) return false;
    if (batch.kv_cache)
      throw Error(
          "mistral: generating at position " + std::to_string(top) +
              " is past sliding_window = " + std::to_string(W) +
              " tokens, and this plugin's KV cache keeps every key (no rolling window); keep the prompt "
              "and the new tokens within " +
              std::to_string(W) + " tokens",
          ENG_ERR_UNSUPPORTED);
    if (host.on_cuda())
      throw Error(
          "mistral: sliding_window = " + std::to_string(W) +
              " is shorter than this batch's longest sample (" + std::to_string(top + 1) +
              " tokens; data.max_seq_len caps them), and this plugin's "
              "windowed attention kernel runs on the CPU only; set data.max_seq_len <= " +
              std::to_string(W) +
              " (the window then changes nothing and the built-in CUDA attention runs) or train on the CPU",
          ENG_ERR_UNSUPPORTED);
    return true;
  }

  // q (B,T,Hq,D), k, v (B,T,Hkv,D), seg (B,T) -> (B,T,Hq,D) through the plugin's op, in fp32.
  Tensor windowed_attention(Host& host, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& seg,
                            double softmax_scale) {
    if (op_id_ == 0) {
      op_ = std::make_unique<mistral::SlidingWindowAttention>();
      // names are unique per session; the counter keeps two instances of this plugin in one session apart
      static std::atomic<int> instances{0};
      op_id_ = op_->register_with(host, "mistral.sliding_window_attention." + std::to_string(instances++), 4,
                                  1, sizeof(mistral::SlidingWindowAttrs));
      host.info("mistral: sliding_window " + std::to_string(*config_.sliding_window) +
                " bites in this batch: the plugin's windowed attention kernel (CPU) runs");
    }
    const mistral::SlidingWindowAttrs attrs{softmax_scale, *config_.sliding_window};
    auto f32 = [&](const Tensor& t) {
      return host.contiguous(t.dtype() == ENG_F32 ? t : host.cast(t, ENG_F32));
    };
    Tensor out = host.custom(op_id_, {f32(q), f32(k), f32(v), host.contiguous(seg)}, &attrs, 1)[0];
    return q.dtype() == ENG_F32 ? out : host.cast(out, q.dtype());
  }

  mistral::MistralConfig config_;
  eng_dtype dtype_ = ENG_F32;
  Param embed_tokens_, norm_;
  std::vector<Layer> layers_;
  std::unique_ptr<mistral::SlidingWindowAttention>
      op_;  // lives as long as the instance (the engine keeps the id)
  eng_op_id op_id_ = 0;
};

}  // namespace

ENGINE_REGISTER_MODEL(
    Mistral, "mistral", "0.1.0",
    "Mistral (MistralForCausalLM) decoders from Hugging Face checkpoints: GQA, sliding-window "
    "attention (its own CPU kernel where the window bites), an out-of-tree example",
    kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA | ENG_MODEL_CAP_KV_CACHE | ENG_MODEL_CAP_PACKING)
