// The qwen2 model plugin: Qwen2 and Qwen2.5 (q, k and v projections with biases, rope_theta, tied embeddings
// in the small sizes). The decoder itself is plugins/common/decoder_model.hpp.
#include <cstring>
#include <string>

#include "engine/cpp/model.hpp"
#include "plugins/common/decoder_model.hpp"

namespace {

using engine::plugins::decoder::Arch;
using engine::plugins::decoder::DecoderModel;

// Presets for `engine init-model --arch qwen2`. vocab_size 512 and the special-token ids match the tokenizer
// that init-model writes beside them (tests/data/models/tokenizers/qwen2: <|endoftext|> 509, <|im_start|>
// 510,
// <|im_end|> 511, made by scripts/fixtures/make_model_fixtures.py).
// tiny: 125K parameters, a few milliseconds per step on a 2-core CPU. small: 2.9M parameters.
constexpr const char* kTiny = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "model_type": "qwen2",
  "hidden_act": "silu",
  "hidden_size": 64,
  "intermediate_size": 176,
  "num_hidden_layers": 2,
  "num_attention_heads": 4,
  "num_key_value_heads": 2,
  "vocab_size": 512,
  "max_position_embeddings": 2048,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "tie_word_embeddings": true,
  "use_sliding_window": false,
  "sliding_window": null,
  "max_window_layers": 2,
  "attention_dropout": 0.0,
  "initializer_range": 0.02,
  "bos_token_id": 509,
  "eos_token_id": 511,
  "torch_dtype": "float32",
  "use_cache": true
}
)";

constexpr const char* kSmall = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "model_type": "qwen2",
  "hidden_act": "silu",
  "hidden_size": 256,
  "intermediate_size": 688,
  "num_hidden_layers": 4,
  "num_attention_heads": 8,
  "num_key_value_heads": 2,
  "vocab_size": 512,
  "max_position_embeddings": 4096,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "tie_word_embeddings": true,
  "use_sliding_window": false,
  "sliding_window": null,
  "max_window_layers": 4,
  "attention_dropout": 0.0,
  "initializer_range": 0.02,
  "bos_token_id": 509,
  "eos_token_id": 511,
  "torch_dtype": "float32",
  "use_cache": true
}
)";

class Qwen2Model : public DecoderModel {
 public:
  Qwen2Model(engine::sdk::Host& host, const std::string& hf_config_json, const std::string& options_json)
      : DecoderModel(host, hf_config_json, options_json, Arch::kQwen2) {}

  static const char* preset_config(const char* preset) {
    if (preset == nullptr) return nullptr;
    if (std::strcmp(preset, "tiny") == 0) return kTiny;
    if (std::strcmp(preset, "small") == 0) return kSmall;
    return nullptr;
  }
};

}  // namespace

ENGINE_REGISTER_MODEL(
    Qwen2Model, "qwen2", "0.1.0",
    "Qwen2 / Qwen2.5 causal decoders from Hugging Face checkpoints (GQA, q/k/v biases, RoPE)",
    engine::plugins::decoder::kOptionsSchema, engine::plugins::decoder::kCapabilities)
