// plugins/common/decoder_config.hpp and decoder_params.hpp: config.json parsing for both architectures and
// the declared parameter list against published checkpoints' indexes
// (tests/data/models/*/model.safetensors.index.json).
#include "plugins/common/decoder_config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "plugins/common/decoder_params.hpp"

namespace {

using engine::plugins::decoder::Arch;
using engine::plugins::decoder::decoder_param_specs;
using engine::plugins::decoder::DecoderConfig;
using engine::plugins::decoder::ParamSpec;
using engine::plugins::decoder::parse_decoder_config;

std::string data_dir() {
  const char* d = std::getenv("ENGINE_TEST_DATA");
  return d != nullptr ? std::string(d) + "/models" : std::string("tests/data/models");
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::map<std::string, ParamSpec> by_name(const std::vector<ParamSpec>& specs) {
  std::map<std::string, ParamSpec> out;
  for (const ParamSpec& s : specs) out[s.name] = s;
  return out;
}

int64_t numel(const ParamSpec& s) {
  int64_t n = 1;
  for (int64_t d : s.shape) n *= d;
  return n;
}

// The declared names equal the index's weight_map keys, and the declared shapes in bf16 add up to its
// total_size.
void expect_matches_index(const DecoderConfig& c, const std::string& index_path) {
  nlohmann::json index = nlohmann::json::parse(read_text(index_path));
  std::set<std::string> in_index;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it)
    in_index.insert(it.key());
  std::vector<ParamSpec> specs = decoder_param_specs(c);
  std::set<std::string> declared;
  int64_t bytes = 0;
  for (const ParamSpec& s : specs) {
    EXPECT_TRUE(declared.insert(s.name).second) << "declared twice: " << s.name;
    bytes += numel(s) * 2;
  }
  for (const std::string& n : in_index)
    EXPECT_TRUE(declared.count(n)) << "in the checkpoint, not declared: " << n;
  for (const std::string& n : declared)
    EXPECT_TRUE(in_index.count(n)) << "declared, not in the checkpoint: " << n;
  EXPECT_EQ(bytes, index["metadata"]["total_size"].get<int64_t>());
}

TEST(DecoderConfig, Qwen25_7BInstructParsesAndMatchesItsIndex) {
  const std::string dir = data_dir() + "/qwen2.5-7b-instruct";
  DecoderConfig c = parse_decoder_config(read_text(dir + "/config.json"), Arch::kQwen2);
  EXPECT_EQ(c.architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(c.hidden_size, 3584);
  EXPECT_EQ(c.intermediate_size, 18944);
  EXPECT_EQ(c.n_layers, 28);
  EXPECT_EQ(c.n_heads, 28);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 152064);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.rope.scaling, ENG_ROPE_NONE);
  EXPECT_EQ(c.rope.rotary_dim, 128);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_EQ(c.checkpoint_dtype, ENG_BF16);
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_EQ(c.eos_token_id, 151645);
  expect_matches_index(c, dir + "/model.safetensors.index.json");

  auto specs = by_name(decoder_param_specs(c));
  EXPECT_EQ(specs["model.layers.27.self_attn.k_proj.weight"].shape, (std::vector<int64_t>{512, 3584}));
  EXPECT_EQ(specs["model.layers.0.self_attn.q_proj.bias"].shape, (std::vector<int64_t>{3584}));
  EXPECT_EQ(specs["model.layers.3.mlp.down_proj.weight"].shape, (std::vector<int64_t>{3584, 18944}));
  EXPECT_EQ(specs["lm_head.weight"].shape, (std::vector<int64_t>{152064, 3584}));
  EXPECT_EQ(std::string(engine::plugins::decoder::lm_head_name(c)), "lm_head.weight");
}

TEST(DecoderConfig, Llama31_8BParsesRopeScalingAndMatchesItsIndex) {
  const std::string dir = data_dir() + "/llama-3.1-8b";
  DecoderConfig c = parse_decoder_config(read_text(dir + "/config.json"), Arch::kLlama);
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.n_layers, 32);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.scaling, ENG_ROPE_LLAMA3);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope.original_max_position, 8192);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  expect_matches_index(c, dir + "/model.safetensors.index.json");
  auto specs = by_name(decoder_param_specs(c));
  EXPECT_EQ(specs.count("model.layers.0.self_attn.q_proj.bias"), 0u);
  EXPECT_EQ(specs["model.layers.31.self_attn.v_proj.weight"].shape, (std::vector<int64_t>{1024, 4096}));
}

TEST(DecoderConfig, RolesAndFlagsFollowTheSeams) {
  DecoderConfig c =
      parse_decoder_config(read_text(data_dir() + "/parity/qwen2_tied/config.json"), Arch::kQwen2);
  auto specs = by_name(decoder_param_specs(c));
  EXPECT_EQ(specs.count("lm_head.weight"), 0u) << "tied models read the output projection from the embedding";
  EXPECT_EQ(std::string(engine::plugins::decoder::lm_head_name(c)), "model.embed_tokens.weight");
  const ParamSpec& q = specs["model.layers.1.self_attn.q_proj.weight"];
  EXPECT_EQ(q.role, ENG_ROLE_LINEAR);
  EXPECT_EQ(q.block, 1);
  EXPECT_EQ(q.flags & ENG_PARAM_NO_DECAY, 0u);
  const ParamSpec& b = specs["model.layers.1.self_attn.v_proj.bias"];
  EXPECT_EQ(b.role, ENG_ROLE_BIAS);
  EXPECT_NE(b.flags & ENG_PARAM_NO_DECAY, 0u);
  const ParamSpec& n = specs["model.norm.weight"];
  EXPECT_EQ(n.role, ENG_ROLE_NORM);
  EXPECT_NE(n.flags & ENG_PARAM_NO_DECAY, 0u);
  EXPECT_EQ(n.init, ENG_INIT_ONES);
  EXPECT_EQ(n.block, -1);
  EXPECT_EQ(specs["model.embed_tokens.weight"].role, ENG_ROLE_EMBEDDING);
  // the fixture's safetensors holds exactly these tensors
  EXPECT_EQ(specs.size(), 1u + 2u * 12u + 1u);
}

TEST(DecoderConfig, ReadsTransformers5RopeParametersAndExplicitHeadDim) {
  // qwen2_tied: rope_parameters {rope_theta: 1e6, rope_type: default} (transformers 5 layout)
  DecoderConfig q =
      parse_decoder_config(read_text(data_dir() + "/parity/qwen2_tied/config.json"), Arch::kQwen2);
  EXPECT_DOUBLE_EQ(q.rope.theta, 1e6);
  EXPECT_EQ(q.rope.scaling, ENG_ROPE_NONE);
  EXPECT_EQ(q.head_dim, 32);
  EXPECT_TRUE(q.tie_word_embeddings);
  // llama3_tied: legacy rope_theta + rope_scaling, head_dim 24 != 64 / 4
  DecoderConfig l =
      parse_decoder_config(read_text(data_dir() + "/parity/llama3_tied/config.json"), Arch::kLlama);
  EXPECT_EQ(l.head_dim, 24);
  EXPECT_EQ(l.rope.rotary_dim, 24);
  EXPECT_EQ(l.rope.scaling, ENG_ROPE_LLAMA3);
  EXPECT_EQ(l.rope.original_max_position, 64);
  auto specs = by_name(decoder_param_specs(l));
  EXPECT_EQ(specs["model.layers.0.self_attn.q_proj.weight"].shape, (std::vector<int64_t>{96, 64}));
  EXPECT_EQ(specs["model.layers.0.self_attn.o_proj.weight"].shape, (std::vector<int64_t>{64, 96}));
  // llama2_untied: rope_parameters with rope_type default and theta 1e4
  DecoderConfig l2 =
      parse_decoder_config(read_text(data_dir() + "/parity/llama2_untied/config.json"), Arch::kLlama);
  EXPECT_DOUBLE_EQ(l2.rope.theta, 10000.0);
  EXPECT_EQ(l2.n_kv_heads, 5);
}

// Llama 2's published config.json (meta-llama/Llama-2-7b-hf): no head_dim, no rope_theta (default 10000),
// rope_scaling null, pretraining_tp, float16 weights.
TEST(DecoderConfig, ReadsALlama2Config) {
  const std::string text = R"({"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008,
    "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
    "tie_word_embeddings": false, "torch_dtype": "float16", "transformers_version": "4.31.0.dev0",
    "use_cache": true, "vocab_size": 32000})";
  DecoderConfig c = parse_decoder_config(text, Arch::kLlama);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.n_kv_heads, 32);
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_EQ(c.rope.scaling, ENG_ROPE_NONE);
  EXPECT_EQ(c.checkpoint_dtype, ENG_F16);
  EXPECT_EQ(c.bos_token_id, 1);
  int64_t params = 0;
  for (const ParamSpec& s : decoder_param_specs(c)) params += numel(s);
  EXPECT_EQ(params, 6738415616);  // Llama-2-7b's published parameter count
}

std::string error_of(const std::string& text, Arch arch) {
  try {
    parse_decoder_config(text, arch);
  } catch (const engine::sdk::Error& e) {
    return e.what();
  }
  return "";
}

TEST(DecoderConfig, RefusesWhatItCannotHonourNamingTheKey) {
  const std::string base =
      R"("hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100)";
  auto cfg = [&](const std::string& extra) { return "{" + base + extra + "}"; };
  EXPECT_EQ(error_of(cfg(""), Arch::kLlama), "");
  EXPECT_NE(error_of(R"({"hidden_size": 64})", Arch::kLlama).find("'vocab_size' is missing"),
            std::string::npos);
  EXPECT_NE(
      error_of(cfg(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4.0})"), Arch::kLlama).find("yarn"),
      std::string::npos);
  EXPECT_NE(error_of(cfg(R"(, "num_key_value_heads": 3)"), Arch::kLlama).find("num_key_value_heads"),
            std::string::npos);
  EXPECT_NE(error_of(cfg(R"(, "use_sliding_window": true)"), Arch::kQwen2).find("use_sliding_window"),
            std::string::npos);
  EXPECT_NE(error_of(cfg(R"(, "model_type": "qwen2")"), Arch::kLlama).find("use the 'qwen2' model plugin"),
            std::string::npos);
  EXPECT_NE(error_of(cfg(R"(, "hidden_act": "gelu")"), Arch::kQwen2).find("hidden_act"), std::string::npos);
  EXPECT_NE(error_of(cfg(R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0})"), Arch::kLlama)
                .find("llama3 scaling needs"),
            std::string::npos);
  EXPECT_NE(error_of("{not json", Arch::kQwen2).find("not valid JSON"), std::string::npos);
  // Llama 3.1 Instruct lists several eos ids; the first is the model's
  DecoderConfig c = parse_decoder_config(cfg(R"(, "eos_token_id": [128001, 128008, 128009])"), Arch::kLlama);
  EXPECT_EQ(c.eos_token_id, 128001);
  // attention_bias gives llama biases on q, k, v and o
  DecoderConfig b = parse_decoder_config(cfg(R"(, "attention_bias": true, "mlp_bias": true)"), Arch::kLlama);
  auto specs = by_name(decoder_param_specs(b));
  EXPECT_EQ(specs.count("model.layers.1.self_attn.o_proj.bias"), 1u);
  EXPECT_EQ(specs.count("model.layers.1.mlp.down_proj.bias"), 1u);
}

}  // namespace
