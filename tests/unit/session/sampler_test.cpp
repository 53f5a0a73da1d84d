// engine/session/sampler.cpp: greedy, temperature and top-p sampling.
#include "engine/session/sampler.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/core/error.hpp"

namespace {

using engine::session::SamplingOptions;
using engine::session::TokenSampler;

TEST(Sampler, GreedyIsArgmaxWithFirstIndexOnTies) {
  TokenSampler s(SamplingOptions{});
  std::vector<float> logits{0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(s.next(logits), 1);
  EXPECT_EQ(engine::session::argmax(std::vector<float>{-3.f, -2.f, -2.5f}), 1);
}

TEST(Sampler, FrequenciesFollowTheTemperedSoftmax) {
  const std::vector<float> logits{1.0f, 0.0f, 2.0f, -1.0f};
  const double t = 0.7;
  TokenSampler s(SamplingOptions{t, 1.0, 42});
  std::vector<int> counts(logits.size(), 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) counts[static_cast<size_t>(s.next(logits))]++;
  double z = 0;
  for (float l : logits) z += std::exp(l / t);
  for (size_t i = 0; i < logits.size(); ++i) {
    const double p = std::exp(logits[i] / t) / z;
    const double sd = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(counts[i] / double(n), p, 5 * sd + 1e-4) << "token " << i;
  }
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  // probabilities about 0.64, 0.24, 0.09, 0.03: top_p 0.8 keeps the first two only
  const std::vector<float> logits{3.0f, 2.0f, 1.0f, 0.0f};
  TokenSampler s(SamplingOptions{1.0, 0.8, 7});
  std::vector<int> counts(4, 0);
  for (int i = 0; i < 5000; ++i) counts[static_cast<size_t>(s.next(logits))]++;
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_EQ(counts[2], 0);
  EXPECT_EQ(counts[3], 0);
  // renormalised over the nucleus: p0 = e^3 / (e^3 + e^2) = 0.731
  EXPECT_NEAR(counts[0] / 5000.0, std::exp(3.0) / (std::exp(3.0) + std::exp(2.0)), 0.03);
  // a tiny top_p is greedy
  TokenSampler g(SamplingOptions{1.0, 1e-6, 7});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(g.next(logits), 0);
}

TEST(Sampler, ASeedGivesTheSameTokens) {
  std::vector<float> logits(50);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(float(i));
  TokenSampler a(SamplingOptions{1.0, 0.9, 123}), b(SamplingOptions{1.0, 0.9, 123}),
      c(SamplingOptions{1.0, 0.9, 124});
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 64; ++i) {
    ta.push_back(a.next(logits));
    tb.push_back(b.next(logits));
    tc.push_back(c.next(logits));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
}

TEST(Sampler, RefusesBadOptions) {
  EXPECT_THROW(TokenSampler(SamplingOptions{-0.1, 1.0, 0}), engine::Error);
  EXPECT_THROW(TokenSampler(SamplingOptions{1.0, 0.0, 0}), engine::Error);
  EXPECT_THROW(TokenSampler(SamplingOptions{1.0, 1.5, 0}), engine::Error);
}

}  // namespace
