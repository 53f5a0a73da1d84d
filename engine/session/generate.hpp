// Generation with a KV cache: the prompt in one forward (prefill), then one token per forward, each attending
// to the cached keys and values of everything before it. Nothing is recorded on the tape.
//
//   GenerateOptions o;  o.max_new_tokens = 64;  o.stop_tokens = {eos};
//   std::vector<int32_t> out = generate(model, prompt_ids, o, [&](int32_t id) { streamer.put(id); });
//
// Sampling follows sampler.hpp (greedy at temperature 0). The cache holds prompt + max_new_tokens positions
// in fp32 on the session's device; generation stops at a stop token (included in the output and passed to
// on_token) or after max_new_tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "engine/session/model_loader.hpp"
#include "engine/session/sampler.hpp"

namespace engine::session {

struct GenerateOptions {
  int64_t max_new_tokens = 256;
  SamplingOptions sampling;
  std::vector<int32_t> stop_tokens;
  // > 0: only ids below this are sampled. The tokenizer's id count: a model's embedding often has padding rows
  // beyond it (Qwen2.5: 152,064 rows for 151,665 tokens) that have no text, so they are never generated.
  int64_t sampled_vocab = 0;
};

// Returns the new tokens. engine::Error for an empty prompt, max_new_tokens < 1, or a model without the
// KV-cache capability (checked by the caller through the plugin record; the forward would fail otherwise).
std::vector<int32_t> generate(ModelInstance& model, std::span<const int32_t> prompt,
                              const GenerateOptions& options,
                              const std::function<void(int32_t)>& on_token = {});

}  // namespace engine::session
