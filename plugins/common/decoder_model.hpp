// decoder_model.hpp: the forward pass shared by the llama and qwen2 plugins, written with host ops only.
//
//   x = embed_tokens[ids]                                             (B,T,C)
//   for each layer i, inside block_begin(i) .. block_end(i):
//     h = rms_norm(x, input_layernorm)                                (B,T,C)
//     q = linear(h, q_proj) -> (B,T,Hq,D);  k, v = linear(h, k_proj / v_proj) -> (B,T,Hkv,D)
//     q, k = rope(q, k, position_ids)                                 HF rotate_half convention
//     a = attention(q, k, v, segment_ids, 1/sqrt(D), kv_cache, i)     causal GQA -> (B,T,Hq,D) -> (B,T,Hq*D)
//     x = x + linear(a, o_proj)
//     h = rms_norm(x, post_attention_layernorm)
//     x = x + linear(swiglu(linear(h, gate_proj), linear(h, up_proj)), down_proj)
//   return rms_norm(x, model.norm)                                    (B,T,C); the engine applies lm_head
//
// Every projection goes through host.linear (the linear seam), so quantizers and PEFT methods act without the
// model knowing; every layer is one Block (the block seam) for activation checkpointing and parallel hooks.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/abi/model.h"
#include "engine/cpp/host.hpp"
#include "engine/cpp/model.hpp"
#include "plugins/common/decoder_config.hpp"
#include "plugins/common/decoder_params.hpp"

namespace engine::plugins::decoder {

// The model's recipe options ([model] section): {"dtype": "auto" | "float32" | "bfloat16" | "float16"}.
inline constexpr const char* kOptionsSchema = R"({
  "type": "object",
  "properties": {
    "dtype": {"type": "string", "enum": ["auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16"], "default": "auto",
              "description": "dtype of the weights in the parameter store; auto: float32 on the CPU, the checkpoint's torch_dtype on CUDA"}
  },
  "additionalProperties": false
})";

inline constexpr uint64_t kCapabilities =
    ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA | ENG_MODEL_CAP_KV_CACHE | ENG_MODEL_CAP_PACKING;

class DecoderModel : public sdk::Model {
 public:
  DecoderModel(sdk::Host& host, const std::string& hf_config_json, const std::string& options_json, Arch arch)
      : config_(parse_decoder_config(hf_config_json, arch)), specs_(decoder_param_specs(config_)) {
    dtype_ = host.on_cuda() ? config_.checkpoint_dtype : ENG_F32;
    if (!options_json.empty()) {
      nlohmann::json o;
      try {
        o = nlohmann::json::parse(options_json);
      } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
        throw sdk::Error(std::string(arch_name(arch)) +
                         " plugin: the [model] options are not valid JSON: " + e.what());
      }
      if (!o.is_null() && !o.is_object())
        throw sdk::Error(std::string(arch_name(arch)) + ": options must be an object");
      for (auto it = o.begin(); o.is_object() && it != o.end(); ++it) {
        if (it.key() != "dtype") {
          throw sdk::Error(std::string(arch_name(arch)) + " plugin: unknown option '" + it.key() +
                           "' in [model]; known options: dtype");
        }
      }
      if (o.is_object() && o.contains("dtype") && !o["dtype"].is_string()) {
        throw sdk::Error(std::string(arch_name(arch)) + " plugin: option dtype must be a string, got " +
                         o["dtype"].dump());
      }
      if (o.is_object() && o.contains("dtype")) {
        const std::string d = o["dtype"].get<std::string>();
        if (d == "float32" || d == "fp32") {
          dtype_ = ENG_F32;
        } else if (d == "bfloat16" || d == "bf16") {
          dtype_ = ENG_BF16;
        } else if (d == "float16" || d == "fp16") {
          dtype_ = ENG_F16;
        } else if (d != "auto") {
          throw sdk::Error(std::string(arch_name(arch)) + " plugin: option dtype = '" + d +
                           "'; use auto, float32, bfloat16 or float16");
        }
      }
    }
  }

  const DecoderConfig& config() const noexcept { return config_; }

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
    m.lm_head_param = lm_head_name(config_);
    m.architecture = config_.architecture.c_str();
    m.bos_token_id = config_.bos_token_id;
    m.eos_token_id = config_.eos_token_id;
    return m;
  }

  // Declares every parameter; each layer's parameters inside that layer's block so the store records it.
  void declare_params(sdk::Host& host) override {
    params_.clear();
    size_t i = 0;
    while (i < specs_.size()) {
      const int32_t block = specs_[i].block;
      if (block < 0) {
        params_.push_back(declare(host, specs_[i++]));
        continue;
      }
      sdk::Block scope(host, block);
      while (i < specs_.size() && specs_[i].block == block) params_.push_back(declare(host, specs_[i++]));
    }
    resolve();
  }

  sdk::Tensor forward(sdk::Host& host, const sdk::Batch& batch) override {
    return forward_blocks(host, batch, sdk::Tensor(), 0, config_.n_layers);
  }

  // The blocks [first, last): a pipeline stage's part of forward (the same code: forward is all of them).
  sdk::Tensor forward_blocks(sdk::Host& host, const sdk::Batch& batch, const sdk::Tensor& input, int32_t first,
                             int32_t last) override {
    if (params_.empty()) throw sdk::Error("forward called before declare_params", ENG_ERR_INTERNAL);
    if (first < 0 || last <= first || last > config_.n_layers || (first == 0) == static_cast<bool>(input))
      throw sdk::Error("forward_blocks [" + std::to_string(first) + ", " + std::to_string(last) + ") of " +
                           std::to_string(config_.n_layers) + " blocks" +
                           (first == 0 ? " takes the token ids, not an input" : " needs the previous stage's output"),
                       ENG_ERR_INVALID_ARGUMENT);
    if (!batch.input_ids || batch.input_ids.ndim() != 2)
      throw sdk::Error("forward: input_ids must be a (B,T) tensor", ENG_ERR_INVALID_ARGUMENT);
    if (!batch.position_ids) throw sdk::Error("forward: position_ids are required", ENG_ERR_INVALID_ARGUMENT);
    const int64_t B = batch.input_ids.dim(0), T = batch.input_ids.dim(1);
    const int64_t D = config_.head_dim;
    const double softmax_scale = 1.0 / std::sqrt(static_cast<double>(D));

    sdk::Tensor x = first == 0 ? host.embedding(embed_tokens_, batch.input_ids) : input;  // (B,T,C)
    for (int32_t i = first; i < last; ++i) {
      const Layer& L = layers_[static_cast<size_t>(i)];
      sdk::Block block(host, i);
      sdk::Tensor h = host.rms_norm(x, L.input_layernorm, config_.rms_norm_eps);         // (B,T,C)
      // The heads this rank computes: all of them, or its share under tensor parallelism (the projections'
      // outputs are split in whole heads), so the same code runs on 1 and N ranks.
      // Each local lets go of its tensor right after its last use: a recorded node keeps what its backward
      // needs, and in a checkpointed block (nothing saved) the forward then holds no more than the replay does
      // (at 32k tokens, gate and up held through down_proj were 2 x 1.2 GiB above the replay's peak).
      sdk::Tensor q = host.linear(h, L.q_proj, L.q_bias), k = host.linear(h, L.k_proj, L.k_bias),
                  v = host.linear(h, L.v_proj, L.v_bias);
      h.reset();
      const int64_t Hq = q.dim(-1) / D, Hkv = k.dim(-1) / D;
      q = host.reshape(q, {B, T, Hq, D});   // (B,T,Hq,D)
      k = host.reshape(k, {B, T, Hkv, D});  // (B,T,Hkv,D)
      v = host.reshape(v, {B, T, Hkv, D});  // (B,T,Hkv,D)
      q = host.rope(q, batch.position_ids, config_.rope);
      k = host.rope(k, batch.position_ids, config_.rope);
      sdk::Tensor a =
          host.attention(q, k, v, batch.segment_ids, softmax_scale, batch.kv_cache, i);  // (B,T,Hq,D)
      q.reset();
      k.reset();
      v.reset();
      a = host.reshape(a, {B, T, Hq * D});                                               // (B,T,Hq*D)
      x = host.add(x, host.linear(a, L.o_proj, L.o_bias));                               // (B,T,C)
      a.reset();
      h = host.rms_norm(x, L.post_attention_layernorm, config_.rms_norm_eps);
      sdk::Tensor gate = host.linear(h, L.gate_proj, L.gate_bias);  // (B,T,I)
      sdk::Tensor up = host.linear(h, L.up_proj, L.up_bias);        // (B,T,I)
      h.reset();
      sdk::Tensor act = host.swiglu(gate, up);  // (B,T,I)
      gate.reset();
      up.reset();
      x = host.add(x, host.linear(act, L.down_proj, L.down_bias));  // (B,T,C)
    }
    if (last < config_.n_layers) return x;                  // (B,T,C): the next stage's input
    return host.rms_norm(x, norm_, config_.rms_norm_eps);  // (B,T,C)
  }

 private:
  struct Layer {
    sdk::Param q_proj, q_bias, k_proj, k_bias, v_proj, v_bias, o_proj, o_bias;
    sdk::Param gate_proj, gate_bias, up_proj, up_bias, down_proj, down_bias;
    sdk::Param input_layernorm, post_attention_layernorm;
  };

  sdk::Param declare(sdk::Host& host, const ParamSpec& s) {
    return host.declare(sdk::ParamDecl(s.name, s.shape, dtype_, s.role, s.flags, s.init, s.init_arg));
  }

  sdk::Param by_name(const std::string& name) const {
    for (size_t i = 0; i < specs_.size(); ++i)
      if (specs_[i].name == name) return params_[i];
    return sdk::Param();
  }

  // Handles by role, once after declaration (absent biases stay empty Params).
  void resolve() {
    embed_tokens_ = by_name("model.embed_tokens.weight");
    norm_ = by_name("model.norm.weight");
    layers_.assign(static_cast<size_t>(config_.n_layers), Layer{});
    for (int32_t i = 0; i < config_.n_layers; ++i) {
      const std::string a = layer_prefix(i) + "self_attn.", m = layer_prefix(i) + "mlp.";
      Layer& L = layers_[static_cast<size_t>(i)];
      L.q_proj = by_name(a + "q_proj.weight");
      L.q_bias = by_name(a + "q_proj.bias");
      L.k_proj = by_name(a + "k_proj.weight");
      L.k_bias = by_name(a + "k_proj.bias");
      L.v_proj = by_name(a + "v_proj.weight");
      L.v_bias = by_name(a + "v_proj.bias");
      L.o_proj = by_name(a + "o_proj.weight");
      L.o_bias = by_name(a + "o_proj.bias");
      L.gate_proj = by_name(m + "gate_proj.weight");
      L.gate_bias = by_name(m + "gate_proj.bias");
      L.up_proj = by_name(m + "up_proj.weight");
      L.up_bias = by_name(m + "up_proj.bias");
      L.down_proj = by_name(m + "down_proj.weight");
      L.down_bias = by_name(m + "down_proj.bias");
      L.input_layernorm = by_name(layer_prefix(i) + "input_layernorm.weight");
      L.post_attention_layernorm = by_name(layer_prefix(i) + "post_attention_layernorm.weight");
    }
  }

  DecoderConfig config_;
  std::vector<ParamSpec> specs_;
  eng_dtype dtype_ = ENG_F32;
  std::vector<sdk::Param> params_;  // parallel to specs_
  sdk::Param embed_tokens_, norm_;
  std::vector<Layer> layers_;
};

}  // namespace engine::plugins::decoder
