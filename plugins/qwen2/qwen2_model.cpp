// The qwen2 model plugin: Qwen2 and Qwen2.5 (q, k and v projections with biases, rope_theta, tied embeddings
// in the small sizes). The decoder itself is plugins/common/decoder_model.hpp, its registration
// plugins/common/decoder_plugin.hpp.
//
// Presets for `engine init-model --arch qwen2` (presets/tiny.json, presets/small.json): vocab_size 512 and
// the special-token ids match the tokenizer that init-model writes beside them
// (tests/data/models/tokenizers/qwen2: <|endoftext|> 509, <|im_start|> 510, <|im_end|> 511, made by
// scripts/fixtures/make_model_fixtures.py). tiny: 125K parameters, a few milliseconds per step on a 2-core
// CPU. small: 2.9M parameters.
#include "decoder_presets.hpp"
#include "plugins/common/decoder_plugin.hpp"

ENGINE_REGISTER_DECODER(
    kQwen2, "qwen2", "0.1.0",
    "Qwen2 / Qwen2.5 causal decoders from Hugging Face checkpoints (GQA, q/k/v biases, RoPE)")
