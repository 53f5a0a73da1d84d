// The llama model plugin: Llama 2, 3, 3.1 and 3.2 (grouped-query attention, Llama 3 rope_scaling,
// tie_word_embeddings, head_dim, attention_bias / mlp_bias). The decoder itself is
// plugins/common/decoder_model.hpp.
#include <cstring>
#include <string>

#include "engine/cpp/model.hpp"
#include "plugins/common/decoder_model.hpp"

namespace {

using engine::plugins::decoder::Arch;
using engine::plugins::decoder::DecoderModel;

// Presets for `engine init-model --arch llama`, shaped like Llama 3.2 (tied embeddings, llama3 rope scaling).
// vocab_size 512 and the special-token ids match the tokenizer that init-model writes beside them
// (tests/data/models/tokenizers/llama: <|begin_of_text|> 507, <|end_of_text|> 508, <|eot_id|> 511).
constexpr const char* kTiny = R"({
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_act": "silu",
  "hidden_size": 64,
  "intermediate_size": 176,
  "num_hidden_layers": 2,
  "num_attention_heads": 4,
  "num_key_value_heads": 2,
  "head_dim": 16,
  "vocab_size": 512,
  "max_position_embeddings": 131072,
  "rms_norm_eps": 1e-05,
  "rope_theta": 500000.0,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "tie_word_embeddings": true,
  "attention_bias": false,
  "attention_dropout": 0.0,
  "mlp_bias": false,
  "pretraining_tp": 1,
  "initializer_range": 0.02,
  "bos_token_id": 507,
  "eos_token_id": 511,
  "torch_dtype": "float32",
  "use_cache": true
}
)";

constexpr const char* kSmall = R"({
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_act": "silu",
  "hidden_size": 256,
  "intermediate_size": 688,
  "num_hidden_layers": 4,
  "num_attention_heads": 8,
  "num_key_value_heads": 2,
  "head_dim": 32,
  "vocab_size": 512,
  "max_position_embeddings": 131072,
  "rms_norm_eps": 1e-05,
  "rope_theta": 500000.0,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "tie_word_embeddings": true,
  "attention_bias": false,
  "attention_dropout": 0.0,
  "mlp_bias": false,
  "pretraining_tp": 1,
  "initializer_range": 0.02,
  "bos_token_id": 507,
  "eos_token_id": 511,
  "torch_dtype": "float32",
  "use_cache": true
}
)";

class LlamaModel : public DecoderModel {
 public:
  LlamaModel(engine::sdk::Host& host, const std::string& hf_config_json, const std::string& options_json)
      : DecoderModel(host, hf_config_json, options_json, Arch::kLlama) {}

  static const char* preset_config(const char* preset) {
    if (preset == nullptr) return nullptr;
    if (std::strcmp(preset, "tiny") == 0) return kTiny;
    if (std::strcmp(preset, "small") == 0) return kSmall;
    return nullptr;
  }
};

}  // namespace

ENGINE_REGISTER_MODEL(
    LlamaModel, "llama", "0.1.0",
    "Llama 2 / 3 / 3.1 / 3.2 causal decoders from Hugging Face checkpoints (GQA, llama3 RoPE "
    "scaling, tied embeddings)",
    engine::plugins::decoder::kOptionsSchema, engine::plugins::decoder::kCapabilities)
