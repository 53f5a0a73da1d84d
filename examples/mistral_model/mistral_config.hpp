// mistral_config.hpp: a Hugging Face MistralForCausalLM config.json (model_type "mistral"), parsed and
// checked.
//
// Mistral is the Llama decoder (pre-norm RMSNorm, grouped-query attention with RoPE, SwiGLU MLP, no biases,
// untied lm_head by default) plus sliding-window attention: with `sliding_window = W` a token attends to
// itself and the W - 1 tokens before it (transformers' masking_utils.sliding_window_overlay:
// kv_idx > q_idx - W). `sliding_window: null` (Mistral 7B v0.2 and later) is full causal attention.
// Both config layouts are read: the pre-5.0 one (rope_theta at the top level) and transformers 5's
// rope_parameters {rope_theta, rope_type}. Unknown keys are ignored, as transformers does; values this plugin
// cannot honour are refused with the key, the value and what would work.
#pragma once

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "engine/abi/engine.h"
#include "engine/cpp/error.hpp"

namespace mistral {

struct MistralConfig {
  std::string architecture = "MistralForCausalLM";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 131072;  // MistralConfig's default: 4096 * 32
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;
  double rope_theta = 10000.0;
  std::optional<int64_t> sliding_window;  // empty: full causal attention
  eng_dtype checkpoint_dtype = ENG_BF16;
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
};

namespace detail {

inline std::string where(const std::string& key) { return "mistral config.json: key '" + key + "'"; }

inline const nlohmann::json* find(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

inline int64_t get_int(const nlohmann::json& j, const char* key, int64_t fallback, bool required) {
  const nlohmann::json* v = find(j, key);
  if (v == nullptr) {
    if (required) throw engine::sdk::Error(where(key) + " is missing; it is required to build the model");
    return fallback;
  }
  if (!v->is_number_integer()) throw engine::sdk::Error(where(key) + " must be an integer, got " + v->dump());
  return v->get<int64_t>();
}

inline double get_double(const nlohmann::json& j, const char* key, double fallback) {
  const nlohmann::json* v = find(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_number()) throw engine::sdk::Error(where(key) + " must be a number, got " + v->dump());
  return v->get<double>();
}

// eos_token_id may be a list; the first entry is the end-of-sequence token.
inline int64_t get_token_id(const nlohmann::json& j, const char* key) {
  const nlohmann::json* v = find(j, key);
  if (v == nullptr) return -1;
  if (v->is_array()) return v->empty() || !(*v)[0].is_number_integer() ? -1 : (*v)[0].get<int64_t>();
  if (!v->is_number_integer()) throw engine::sdk::Error(where(key) + " must be an integer, got " + v->dump());
  return v->get<int64_t>();
}

}  // namespace detail

// Parses config.json text; throws engine::sdk::Error naming the key on anything it cannot honour.
inline MistralConfig parse_mistral_config(const std::string& text) {
  using engine::sdk::Error;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(std::string("mistral config.json is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error("mistral config.json must hold a JSON object");
  MistralConfig c;
  const nlohmann::json* mt = detail::find(j, "model_type");
  const std::string type = mt == nullptr ? "" : (mt->is_string() ? mt->get<std::string>() : mt->dump());
  if (type != "mistral") {
    throw Error("mistral plugin: config.json has model_type '" + type +
                "', this plugin reads 'mistral' (MistralForCausalLM)" +
                (type == "llama" || type == "qwen2" ? "; use the '" + type + "' model plugin" : ""));
  }
  if (const nlohmann::json* a = detail::find(j, "architectures");
      a != nullptr && a->is_array() && !a->empty() && (*a)[0].is_string())
    c.architecture = (*a)[0].get<std::string>();
  if (const nlohmann::json* act = detail::find(j, "hidden_act");
      act != nullptr && (!act->is_string() || act->get<std::string>() != "silu"))
    throw Error(detail::where("hidden_act") + " is " + act->dump() + "; only \"silu\" is supported");

  c.vocab_size = detail::get_int(j, "vocab_size", 0, true);
  c.hidden_size = detail::get_int(j, "hidden_size", 0, true);
  c.intermediate_size = detail::get_int(j, "intermediate_size", 0, true);
  c.n_layers = static_cast<int32_t>(detail::get_int(j, "num_hidden_layers", 0, true));
  c.n_heads = static_cast<int32_t>(detail::get_int(j, "num_attention_heads", 0, true));
  c.n_kv_heads = static_cast<int32_t>(detail::get_int(j, "num_key_value_heads", c.n_heads, false));
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.n_layers <= 0 ||
      c.n_heads <= 0 || c.n_kv_heads <= 0)
    throw Error(
        "mistral config.json: vocab_size, hidden_size, intermediate_size, num_hidden_layers, "
        "num_attention_heads and num_key_value_heads must all be positive");
  if (c.n_heads % c.n_kv_heads != 0)
    throw Error(detail::where("num_key_value_heads") + " = " + std::to_string(c.n_kv_heads) +
                " must divide num_attention_heads = " + std::to_string(c.n_heads));
  if (detail::find(j, "head_dim") == nullptr && c.hidden_size % c.n_heads != 0)
    throw Error(detail::where("hidden_size") + " = " + std::to_string(c.hidden_size) +
                " is not a multiple of num_attention_heads; give head_dim explicitly");
  c.head_dim = static_cast<int32_t>(detail::get_int(j, "head_dim", c.hidden_size / c.n_heads, false));
  if (c.head_dim <= 0 || c.head_dim % 2 != 0)
    throw Error(detail::where("head_dim") + " must be a positive even number (RoPE rotates pairs)");

  c.rms_norm_eps = detail::get_double(j, "rms_norm_eps", 1e-6);
  if (!(c.rms_norm_eps > 0.0)) throw Error(detail::where("rms_norm_eps") + " must be positive");
  c.max_position_embeddings = detail::get_int(j, "max_position_embeddings", 131072, false);
  if (const nlohmann::json* t = detail::find(j, "tie_word_embeddings")) {
    if (!t->is_boolean()) throw Error(detail::where("tie_word_embeddings") + " must be true or false");
    c.tie_word_embeddings = t->get<bool>();
  }
  c.initializer_range = detail::get_double(j, "initializer_range", 0.02);
  if (const double p = detail::get_double(j, "attention_dropout", 0.0); p != 0.0)
    throw Error(
        detail::where("attention_dropout") + " is " + std::to_string(p) +
        "; attention dropout is not implemented (published Mistral checkpoints set 0.0): set it to 0.0, "
        "or use [peft] lora_dropout for regularisation");

  // RoPE: rope_parameters (transformers 5) or rope_theta + rope_scaling; only the default rope type.
  const nlohmann::json* params = detail::find(j, "rope_parameters");
  const nlohmann::json* scaling = params != nullptr ? params : detail::find(j, "rope_scaling");
  c.rope_theta = detail::get_double(j, "rope_theta", 10000.0);
  if (params != nullptr) {
    if (!params->is_object()) throw Error(detail::where("rope_parameters") + " must be an object");
    c.rope_theta = detail::get_double(*params, "rope_theta", c.rope_theta);
  }
  if (!(c.rope_theta > 0.0)) throw Error(detail::where("rope_theta") + " must be positive");
  if (scaling != nullptr) {
    const char* key = params != nullptr ? "rope_parameters" : "rope_scaling";
    if (!scaling->is_object()) throw Error(detail::where(key) + " must be an object or null");
    std::string rope_type = "default";
    if (const nlohmann::json* t = detail::find(*scaling, "rope_type"))
      rope_type = t->is_string() ? t->get<std::string>() : t->dump();
    else if (const nlohmann::json* t2 = detail::find(*scaling, "type"))
      rope_type = t2->is_string() ? t2->get<std::string>() : t2->dump();
    if (rope_type != "default")
      throw Error(detail::where(std::string(key) + ".rope_type") + " is '" + rope_type +
                  "'; this plugin implements the default RoPE only (as published Mistral checkpoints use)");
  }

  if (const nlohmann::json* w = detail::find(j, "sliding_window")) {
    if (!w->is_number_integer() || w->get<int64_t>() <= 0)
      throw Error(detail::where("sliding_window") + " is " + w->dump() +
                  "; it must be a positive integer (tokens a query sees, itself included) or null");
    c.sliding_window = w->get<int64_t>();
  }

  const char* dtype_key = detail::find(j, "torch_dtype") != nullptr ? "torch_dtype" : "dtype";
  if (const nlohmann::json* d = detail::find(j, dtype_key)) {
    const std::string s = d->is_string() ? d->get<std::string>() : d->dump();
    if (s == "bfloat16")
      c.checkpoint_dtype = ENG_BF16;
    else if (s == "float16")
      c.checkpoint_dtype = ENG_F16;
    else if (s == "float32")
      c.checkpoint_dtype = ENG_F32;
    else
      throw Error(detail::where(dtype_key) + " is '" + s + "'; supported: bfloat16, float16, float32");
  }
  c.bos_token_id = detail::get_token_id(j, "bos_token_id");
  c.eos_token_id = detail::get_token_id(j, "eos_token_id");
  return c;
}

}  // namespace mistral
