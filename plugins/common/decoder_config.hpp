// decoder_config.hpp: the Hugging Face config.json of a Llama- or Qwen2-family decoder, parsed and checked.
//
// Both architectures are the same pre-norm decoder (RMSNorm, grouped-query attention with RoPE, SwiGLU MLP);
// they differ only in which projections carry biases, in defaults and in the config keys they accept:
//   llama: attention_bias (q, k, v and o), mlp_bias, head_dim, rope_scaling {"rope_type": "llama3"|"linear"}
//   qwen2: q, k and v always carry biases, o and the MLP never; sliding-window attention is refused
// Both the pre-5.0 transformers layout (rope_theta + rope_scaling at the top level) and the 5.x layout
// (rope_parameters {rope_theta, rope_type, ...}) are read. Unknown keys are ignored, as transformers does;
// keys whose values this implementation cannot honour are refused with the key, the value and what would
// work.
#pragma once

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/abi/engine.h"
#include "engine/cpp/error.hpp"

namespace engine::plugins::decoder {

enum class Arch { kLlama, kQwen2 };

inline const char* arch_name(Arch arch) { return arch == Arch::kLlama ? "llama" : "qwen2"; }

struct DecoderConfig {
  Arch arch = Arch::kLlama;
  std::string architecture;  // "LlamaForCausalLM", "Qwen2ForCausalLM"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // q_proj, k_proj, v_proj biases (qwen2: always; llama: attention_bias)
  bool o_bias = false;    // o_proj bias (llama attention_bias)
  bool mlp_bias = false;  // gate/up/down biases (llama mlp_bias)
  double initializer_range = 0.02;
  eng_rope_config rope{};
  eng_dtype checkpoint_dtype = ENG_BF16;  // torch_dtype / dtype of the published weights
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
};

namespace detail {

inline std::string where(Arch arch, const std::string& key) {
  return std::string(arch_name(arch)) + " config.json: key '" + key + "'";
}

inline const nlohmann::json* find(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

inline int64_t get_int(const nlohmann::json& j, const char* key, Arch arch, int64_t fallback, bool required) {
  const nlohmann::json* v = find(j, key);
  if (v == nullptr) {
    if (required) throw sdk::Error(where(arch, key) + " is missing; it is required to build the model");
    return fallback;
  }
  if (!v->is_number_integer() && !(v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()))
    throw sdk::Error(where(arch, key) + " must be an integer, got " + v->dump());
  int64_t n = v->is_number_integer() ? v->get<int64_t>() : static_cast<int64_t>(v->get<double>());
  return n;
}

inline double get_double(const nlohmann::json& j, const char* key, Arch arch, double fallback) {
  const nlohmann::json* v = find(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_number()) throw sdk::Error(where(arch, key) + " must be a number, got " + v->dump());
  return v->get<double>();
}

inline bool get_bool(const nlohmann::json& j, const char* key, Arch arch, bool fallback) {
  const nlohmann::json* v = find(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) throw sdk::Error(where(arch, key) + " must be true or false, got " + v->dump());
  return v->get<bool>();
}

// eos_token_id may be an integer or a list (Llama 3.1 Instruct: [128001, 128008, 128009]); the first one is
// the model's end-of-sequence token.
inline int64_t get_token_id(const nlohmann::json& j, const char* key, Arch arch) {
  const nlohmann::json* v = find(j, key);
  if (v == nullptr) return -1;
  if (v->is_array()) {
    if (v->empty()) return -1;
    if (!(*v)[0].is_number_integer())
      throw sdk::Error(where(arch, key) + " must hold integers, got " + v->dump());
    return (*v)[0].get<int64_t>();
  }
  if (!v->is_number_integer()) throw sdk::Error(where(arch, key) + " must be an integer, got " + v->dump());
  return v->get<int64_t>();
}

inline eng_dtype parse_dtype(const nlohmann::json& j, Arch arch) {
  const char* key = find(j, "torch_dtype") != nullptr ? "torch_dtype" : "dtype";
  const nlohmann::json* v = find(j, key);
  if (v == nullptr) return ENG_BF16;
  if (!v->is_string()) throw sdk::Error(where(arch, key) + " must be a string, got " + v->dump());
  const std::string s = v->get<std::string>();
  if (s == "bfloat16") return ENG_BF16;
  if (s == "float16") return ENG_F16;
  if (s == "float32") return ENG_F32;
  throw sdk::Error(where(arch, key) + " is '" + s + "'; supported: bfloat16, float16, float32");
}

// rope_theta and scaling from either layout: rope_parameters (transformers >= 5) or rope_theta +
// rope_scaling.
inline eng_rope_config parse_rope(const nlohmann::json& j, Arch arch, double default_theta,
                                  int32_t head_dim) {
  eng_rope_config rope{};
  rope.struct_size = sizeof(rope);
  rope.rotary_dim = head_dim;
  rope.scaling = ENG_ROPE_NONE;
  rope.factor = 1.0;
  const nlohmann::json* params = find(j, "rope_parameters");
  const nlohmann::json* scaling = find(j, "rope_scaling");
  std::string scaling_key = "rope_scaling";
  if (params != nullptr) {
    if (!params->is_object()) throw sdk::Error(where(arch, "rope_parameters") + " must be an object");
    rope.theta = get_double(*params, "rope_theta", arch, get_double(j, "rope_theta", arch, default_theta));
    scaling = params;
    scaling_key = "rope_parameters";
  } else {
    rope.theta = get_double(j, "rope_theta", arch, default_theta);
  }
  if (!(rope.theta > 0.0)) throw sdk::Error(where(arch, "rope_theta") + " must be positive");
  if (scaling == nullptr) return rope;
  if (!scaling->is_object()) throw sdk::Error(where(arch, scaling_key) + " must be an object or null");
  std::string type = "default";
  if (const nlohmann::json* t = find(*scaling, "rope_type")) {
    type = t->is_string() ? t->get<std::string>() : "";
  } else if (const nlohmann::json* t2 = find(*scaling, "type")) {  // the pre-4.45 spelling
    type = t2->is_string() ? t2->get<std::string>() : "";
  }
  const std::string key = scaling_key + ".rope_type";
  if (type == "default") return rope;
  if (type == "linear") {
    rope.scaling = ENG_ROPE_LINEAR;
    rope.factor = get_double(*scaling, "factor", arch, 0.0);
    if (!(rope.factor > 0.0)) throw sdk::Error(where(arch, scaling_key + ".factor") + " must be positive");
    return rope;
  }
  if (type == "llama3") {
    rope.scaling = ENG_ROPE_LLAMA3;
    rope.factor = get_double(*scaling, "factor", arch, 0.0);
    rope.low_freq_factor = get_double(*scaling, "low_freq_factor", arch, 0.0);
    rope.high_freq_factor = get_double(*scaling, "high_freq_factor", arch, 0.0);
    rope.original_max_position = get_int(*scaling, "original_max_position_embeddings", arch, 0, false);
    if (!(rope.factor > 0.0) || !(rope.low_freq_factor > 0.0) ||
        !(rope.high_freq_factor > rope.low_freq_factor) || rope.original_max_position <= 0) {
      throw sdk::Error(where(arch, scaling_key) +
                       ": llama3 scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
                       "original_max_position_embeddings > 0, got " +
                       scaling->dump());
    }
    return rope;
  }
  throw sdk::Error(where(arch, key) + " is '" + type +
                   "'; this plugin implements rope types default, linear and llama3");
}

}  // namespace detail

// Parses config.json text for `arch`; throws sdk::Error naming the key on anything it cannot honour.
inline DecoderConfig parse_decoder_config(const std::string& text, Arch arch) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
    throw sdk::Error(std::string(arch_name(arch)) + " config.json is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw sdk::Error(std::string(arch_name(arch)) + " config.json must hold a JSON object");

  DecoderConfig c;
  c.arch = arch;
  const std::string expected_type = arch == Arch::kLlama ? "llama" : "qwen2";
  if (const nlohmann::json* mt = detail::find(j, "model_type")) {
    const std::string type = mt->is_string() ? mt->get<std::string>() : mt->dump();
    if (type != expected_type) {
      throw sdk::Error(std::string(arch_name(arch)) + " plugin: config.json has model_type '" + type +
                       "', this plugin reads '" + expected_type + "'" +
                       (type == "qwen2" || type == "llama" ? "; use the '" + type + "' model plugin" : ""));
    }
  }
  c.architecture = arch == Arch::kLlama ? "LlamaForCausalLM" : "Qwen2ForCausalLM";
  if (const nlohmann::json* a = detail::find(j, "architectures");
      a != nullptr && a->is_array() && !a->empty() && (*a)[0].is_string()) {
    c.architecture = (*a)[0].get<std::string>();
  }
  if (const nlohmann::json* act = detail::find(j, "hidden_act")) {
    if (!act->is_string() || act->get<std::string>() != "silu")
      throw sdk::Error(detail::where(arch, "hidden_act") + " is " + act->dump() +
                       "; only \"silu\" is supported");
  }

  c.vocab_size = detail::get_int(j, "vocab_size", arch, 0, true);
  c.hidden_size = detail::get_int(j, "hidden_size", arch, 0, true);
  c.intermediate_size = detail::get_int(j, "intermediate_size", arch, 0, true);
  c.n_layers = static_cast<int32_t>(detail::get_int(j, "num_hidden_layers", arch, 0, true));
  c.n_heads = static_cast<int32_t>(detail::get_int(j, "num_attention_heads", arch, 0, true));
  c.n_kv_heads = static_cast<int32_t>(detail::get_int(j, "num_key_value_heads", arch, c.n_heads, false));
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.n_layers <= 0 ||
      c.n_heads <= 0 || c.n_kv_heads <= 0) {
    throw sdk::Error(std::string(arch_name(arch)) +
                     " config.json: vocab_size, hidden_size, intermediate_size, num_hidden_layers, "
                     "num_attention_heads and num_key_value_heads must all be positive");
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    throw sdk::Error(detail::where(arch, "num_key_value_heads") + " = " + std::to_string(c.n_kv_heads) +
                     " must divide num_attention_heads = " + std::to_string(c.n_heads));
  }
  const int64_t default_head_dim = c.hidden_size / c.n_heads;
  c.head_dim = static_cast<int32_t>(detail::get_int(j, "head_dim", arch, default_head_dim, false));
  if (detail::find(j, "head_dim") == nullptr && c.hidden_size % c.n_heads != 0) {
    throw sdk::Error(detail::where(arch, "hidden_size") + " = " + std::to_string(c.hidden_size) +
                     " is not a multiple of num_attention_heads = " + std::to_string(c.n_heads) +
                     "; give head_dim explicitly");
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0)
    throw sdk::Error(detail::where(arch, "head_dim") +
                     " must be a positive even number (RoPE rotates pairs)");

  c.rms_norm_eps = detail::get_double(j, "rms_norm_eps", arch, 1e-6);
  if (!(c.rms_norm_eps > 0.0)) throw sdk::Error(detail::where(arch, "rms_norm_eps") + " must be positive");
  c.max_position_embeddings =
      detail::get_int(j, "max_position_embeddings", arch, arch == Arch::kLlama ? 2048 : 32768, false);
  c.tie_word_embeddings = detail::get_bool(j, "tie_word_embeddings", arch, false);
  c.initializer_range = detail::get_double(j, "initializer_range", arch, 0.02);
  c.rope = detail::parse_rope(j, arch, 10000.0, c.head_dim);
  c.checkpoint_dtype = detail::parse_dtype(j, arch);
  c.bos_token_id = detail::get_token_id(j, "bos_token_id", arch);
  c.eos_token_id = detail::get_token_id(j, "eos_token_id", arch);

  if (arch == Arch::kLlama) {
    const bool attention_bias = detail::get_bool(j, "attention_bias", arch, false);
    c.qkv_bias = attention_bias;
    c.o_bias = attention_bias;
    c.mlp_bias = detail::get_bool(j, "mlp_bias", arch, false);
  } else {
    c.qkv_bias = true;
    if (detail::get_bool(j, "use_sliding_window", arch, false)) {
      throw sdk::Error(
          detail::where(arch, "use_sliding_window") +
          " is true; sliding-window attention is not implemented (the published Qwen2 and Qwen2.5 "
          "checkpoints set it to false)");
    }
  }
  return c;
}

}  // namespace engine::plugins::decoder
