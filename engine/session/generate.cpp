// Generation with a KV cache (see generate.hpp).
#include "engine/session/generate.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <numeric>

#include "engine/core/error.hpp"
#include "engine/runtime/kv_cache.hpp"

namespace engine::session {

namespace {

// ids (1,T) and positions start..start+T-1 (1,T), i32 on the device
std::pair<rt::Tensor, rt::Tensor> step_inputs(rt::Device& device, std::span<const int32_t> ids,
                                              int64_t start) {
  const int64_t t = static_cast<int64_t>(ids.size());
  std::vector<int32_t> pos(ids.size());
  std::iota(pos.begin(), pos.end(), static_cast<int32_t>(start));
  rt::Tensor x = rt::Tensor::from_host(rt::Dims{1, t}, ENG_I32, device, ids.data(), ids.size() * 4);
  rt::Tensor p = rt::Tensor::from_host(rt::Dims{1, t}, ENG_I32, device, pos.data(), pos.size() * 4);
  return {x, p};
}

}  // namespace

std::vector<int32_t> generate(ModelInstance& model, std::span<const int32_t> prompt,
                              const GenerateOptions& options, const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) fail("generate: the prompt is empty (it needs at least one token)");
  if (options.max_new_tokens < 1) fail("generate: --max-new-tokens must be at least 1");
  const eng_model_info& info = model.info();
  for (int32_t id : prompt) {
    if (id < 0 || id >= info.vocab_size)
      fail("generate: prompt token {} is outside the model's vocabulary of {}", id, info.vocab_size);
  }
  if (info.max_position_embeddings > 0 &&
      static_cast<int64_t>(prompt.size()) + options.max_new_tokens > info.max_position_embeddings) {
    spdlog::warn(
        "generate: {} prompt + {} new tokens exceed the model's max_position_embeddings ({}); quality "
        "beyond it is not what the model was trained for",
        prompt.size(), options.max_new_tokens, info.max_position_embeddings);
  }
  rt::Device& device = model.session().device();
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + options.max_new_tokens;
  // k, v per layer: (1, capacity, Hkv, D) f32
  rt::KvCache cache(info.n_layers, 1, capacity, info.n_kv_heads, info.head_dim, ENG_F32, device);
  TokenSampler sampler(options.sampling);

  std::vector<int32_t> out;
  std::vector<int32_t> step(prompt.begin(), prompt.end());
  while (static_cast<int64_t>(out.size()) < options.max_new_tokens) {
    auto [ids, pos] = step_inputs(device, step, cache.length);
    rt::Tensor hidden = model.forward(ids, pos, rt::Tensor(), &cache, /*grad_enabled=*/false);  // (1,T,C)
    cache.advance(static_cast<int64_t>(step.size()));
    const int64_t t = hidden.dim(1);
    rt::Tensor last = hidden.sliced(1, t - 1, t).contiguous().view(rt::Dims{1, info.hidden_size});  // (1,C)
    std::vector<float> logits = model.logits(last).to_float_vector();                               // (V)
    if (options.sampled_vocab > 0 && static_cast<size_t>(options.sampled_vocab) < logits.size())
      logits.resize(static_cast<size_t>(options.sampled_vocab));  // padding rows of the embedding: no text
    const int32_t next = sampler.next(logits);
    out.push_back(next);
    if (on_token) on_token(next);
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), next) != options.stop_tokens.end())
      break;
    step.assign(1, next);
  }
  return out;
}

}  // namespace engine::session
