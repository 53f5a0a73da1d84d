// TokenSampler: greedy, temperature and top-p sampling (see sampler.hpp).
#include "engine/session/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "engine/core/error.hpp"

namespace engine::session {

int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) fail("cannot pick a token from an empty row of logits");
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

TokenSampler::TokenSampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {
  if (!(options.temperature >= 0.0) || !std::isfinite(options.temperature))
    fail("--temperature must be a finite number >= 0 (0 is greedy), got {}", options.temperature);
  if (!(options.top_p > 0.0 && options.top_p <= 1.0))
    fail("--top-p must be in (0, 1], got {}", options.top_p);
}

int32_t TokenSampler::next(std::span<const float> logits) {
  if (greedy()) return argmax(logits);
  if (logits.empty()) fail("cannot sample a token from an empty row of logits");
  // p_i = exp((l_i - max) / T) / sum, in double
  const double t = options_.temperature;
  const float max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double total = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = std::exp((static_cast<double>(logits[i]) - max) / t);
    total += p[i];
  }
  for (double& x : p) x /= total;
  // most likely first (stable: lower ids first among equals)
  std::vector<int32_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return p[size_t(a)] > p[size_t(b)]; });
  // nucleus: the shortest prefix whose mass reaches top_p
  size_t keep = order.size();
  if (options_.top_p < 1.0) {
    double mass = 0.0;
    for (size_t i = 0; i < order.size(); ++i) {
      mass += p[size_t(order[i])];
      if (mass >= options_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0.0;
  for (size_t i = 0; i < keep; ++i) kept += p[size_t(order[i])];
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * kept;  // uniform in [0, kept)
  double acc = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    acc += p[size_t(order[i])];
    if (u < acc) return order[i];
  }
  return order[keep - 1];
}

}  // namespace engine::session
