// decoder_params.hpp: the parameters of a Llama/Qwen2 decoder under their Hugging Face names, in the order of
// transformers' state dict, with the roles and flags the engine's seams act on.
//
// Shapes (C hidden, I intermediate, V vocabulary, Hq/Hkv heads, D head_dim):
//   model.embed_tokens.weight                 (V, C)        embedding
//   model.layers.{i}.self_attn.q_proj.weight  (Hq*D, C)     linear   (+ .bias (Hq*D) when qkv_bias)
//   model.layers.{i}.self_attn.k_proj.weight  (Hkv*D, C)    linear   (+ .bias (Hkv*D))
//   model.layers.{i}.self_attn.v_proj.weight  (Hkv*D, C)    linear   (+ .bias (Hkv*D))
//   model.layers.{i}.self_attn.o_proj.weight  (C, Hq*D)     linear   (+ .bias (C) when o_bias)
//   model.layers.{i}.mlp.gate_proj.weight     (I, C)        linear   (+ .bias (I) when mlp_bias)
//   model.layers.{i}.mlp.up_proj.weight       (I, C)        linear   (+ .bias (I))
//   model.layers.{i}.mlp.down_proj.weight     (C, I)        linear   (+ .bias (C))
//   model.layers.{i}.input_layernorm.weight   (C)           norm
//   model.layers.{i}.post_attention_layernorm.weight (C)    norm
//   model.norm.weight                         (C)           norm
//   lm_head.weight                            (V, C)        linear, absent when tie_word_embeddings
// The list is a pure function of the config so that tests can compare it with a checkpoint's index without an
// engine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/abi/engine.h"
#include "plugins/common/decoder_config.hpp"

namespace engine::plugins::decoder {

struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  eng_param_role role = ENG_ROLE_OTHER;
  uint32_t flags = 0;
  eng_init_kind init = ENG_INIT_ZEROS;
  double init_arg = 0.0;
  int32_t block = -1;  // decoder layer it belongs to, -1 outside the layers
};

inline std::string layer_prefix(int32_t i) { return "model.layers." + std::to_string(i) + "."; }

inline std::vector<ParamSpec> decoder_param_specs(const DecoderConfig& c) {
  const int64_t C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t q_out = int64_t{c.n_heads} * c.head_dim, kv_out = int64_t{c.n_kv_heads} * c.head_dim;
  const double init_std = c.initializer_range;  // transformers' _init_weights: N(0, initializer_range^2)
  std::vector<ParamSpec> out;
  // tp: how tensor parallelism may split the projection (ENG_PARAM_TP_COLUMN: q, k, v, gate, up, whole heads;
  // ENG_PARAM_TP_ROW: o, down; 0: replicated). A column split takes its bias along; a row split's bias stays
  // whole (added after the sum over the ranks).
  auto linear = [&](const std::string& name, int64_t n_out, int64_t n_in, bool bias, int32_t block,
                    uint32_t tp = 0) {
    out.push_back({name + ".weight",
                   {n_out, n_in},
                   ENG_ROLE_LINEAR,
                   ENG_PARAM_TRAINABLE | tp,
                   ENG_INIT_NORMAL,
                   init_std,
                   block});
    if (bias) {
      out.push_back({name + ".bias",
                     {n_out},
                     ENG_ROLE_BIAS,
                     ENG_PARAM_TRAINABLE | ENG_PARAM_NO_DECAY | (tp & ENG_PARAM_TP_COLUMN),
                     ENG_INIT_ZEROS,
                     0.0,
                     block});
    }
  };
  auto norm = [&](const std::string& name, int32_t block) {
    out.push_back(
        {name, {C}, ENG_ROLE_NORM, ENG_PARAM_TRAINABLE | ENG_PARAM_NO_DECAY, ENG_INIT_ONES, 0.0, block});
  };

  // tp: the embedding and lm_head are split over the vocabulary (rows), like a column-split projection.
  out.push_back({"model.embed_tokens.weight",
                 {V, C},
                 ENG_ROLE_EMBEDDING,
                 ENG_PARAM_TRAINABLE | ENG_PARAM_TP_COLUMN,
                 ENG_INIT_NORMAL,
                 init_std,
                 -1});
  for (int32_t i = 0; i < c.n_layers; ++i) {
    const std::string p = layer_prefix(i);
    linear(p + "self_attn.q_proj", q_out, C, c.qkv_bias, i, ENG_PARAM_TP_COLUMN);
    linear(p + "self_attn.k_proj", kv_out, C, c.qkv_bias, i, ENG_PARAM_TP_COLUMN);
    linear(p + "self_attn.v_proj", kv_out, C, c.qkv_bias, i, ENG_PARAM_TP_COLUMN);
    linear(p + "self_attn.o_proj", C, q_out, c.o_bias, i, ENG_PARAM_TP_ROW);
    linear(p + "mlp.gate_proj", I, C, c.mlp_bias, i, ENG_PARAM_TP_COLUMN);
    linear(p + "mlp.up_proj", I, C, c.mlp_bias, i, ENG_PARAM_TP_COLUMN);
    linear(p + "mlp.down_proj", C, I, c.mlp_bias, i, ENG_PARAM_TP_ROW);
    norm(p + "input_layernorm.weight", i);
    norm(p + "post_attention_layernorm.weight", i);
  }
  norm("model.norm.weight", -1);
  if (!c.tie_word_embeddings) linear("lm_head", V, C, false, -1, ENG_PARAM_TP_COLUMN);
  return out;
}

// The (V, C) weight of the output projection: lm_head, or the embedding table when tied.
inline const char* lm_head_name(const DecoderConfig& c) {
  return c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
}

}  // namespace engine::plugins::decoder
