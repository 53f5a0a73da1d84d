// TokenSampler: picks the next token from a row of logits, as transformers' generate does.
//
//   temperature == 0: greedy, argmax (the first index on ties, like torch.argmax).
//   temperature > 0:  p = softmax(logits / temperature); top-p (nucleus) keeps the smallest set of most
//                     likely tokens whose probability sums to at least top_p (always at least one), as
//                     transformers' TopPLogitsWarper; then one draw from the renormalised distribution.
// Draws come from a 64-bit Mersenne Twister seeded with `seed` (its output sequence is fixed by the C++
// standard), mapped to [0, 1) by the top 53 bits, so a seed gives the same tokens on every platform.
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace engine::session {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy
  double top_p = 1.0;        // (0, 1]
  uint64_t seed = 0;
};

class TokenSampler {
 public:
  // engine::Error for a negative temperature or top_p outside (0, 1].
  explicit TokenSampler(const SamplingOptions& options);
  // logits: (V) of one position -> the chosen token id.
  int32_t next(std::span<const float> logits);
  bool greedy() const noexcept { return options_.temperature == 0.0; }

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
};

// argmax of a logits row (first index on ties); engine::Error on an empty row.
int32_t argmax(std::span<const float> logits);

}  // namespace engine::session
