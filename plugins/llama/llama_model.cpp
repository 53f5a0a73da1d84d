// The llama model plugin: Llama 2, 3, 3.1 and 3.2 (grouped-query attention, Llama 3 rope_scaling,
// tie_word_embeddings, head_dim, attention_bias / mlp_bias). The decoder itself is
// plugins/common/decoder_model.hpp, its registration plugins/common/decoder_plugin.hpp.
//
// Presets for `engine init-model --arch llama` (presets/tiny.json, presets/small.json) are shaped like
// Llama 3.2 (tied embeddings, llama3 rope scaling). vocab_size 512 and the special-token ids match the
// tokenizer that init-model writes beside them (tests/data/models/tokenizers/llama: <|begin_of_text|> 507,
// <|end_of_text|> 508, <|eot_id|> 511).
#include "decoder_presets.hpp"
#include "plugins/common/decoder_plugin.hpp"

ENGINE_REGISTER_DECODER(
    kLlama, "llama", "0.1.0",
    "Llama 2 / 3 / 3.1 / 3.2 causal decoders from Hugging Face checkpoints (GQA, llama3 RoPE "
    "scaling, tied embeddings)")
