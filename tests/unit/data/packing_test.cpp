// Packing and padding: rows hold whole samples, position ids restart per sample, segment ids are distinct
// per sample with padding as 0, labels never cross a sample boundary, and counts of truncated/dropped
// samples are right.
#include "engine/data/packing.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <map>
#include <numeric>

#include "engine/core/error.hpp"

namespace engine::data {
namespace {

// A sample of `n` ids (base, base+1, ...) whose last `trained` positions carry shifted labels.
TokenizedSample make_sample(int32_t base, size_t n, size_t trained) {
  TokenizedSample s;
  s.ids.resize(n);
  std::iota(s.ids.begin(), s.ids.end(), base);
  s.labels.assign(n, kIgnoreIndex);
  for (size_t t = n - 1 - std::min(trained, n - 1); t + 1 < n; ++t) s.labels[t] = s.ids[t + 1];
  return s;
}

std::vector<TokenizedSample> samples() {
  // Lengths 5, 3, 7, 2, 8, 4 with distinct id ranges; sample 4 (8 tokens) is longer than T = 7.
  return {make_sample(100, 5, 2), make_sample(200, 3, 2), make_sample(300, 7, 3),
          make_sample(400, 2, 1), make_sample(500, 8, 8), make_sample(600, 4, 3)};
}

void check_batch_against_samples(const Batch& b, const std::vector<TokenizedSample>& all,
                                 const PackingPlan& plan, const std::vector<uint64_t>& rows) {
  const size_t T = static_cast<size_t>(b.seq_len);
  int64_t labels = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    size_t t = 0;
    int32_t segment = 0;
    for (const RowPart& part : plan.rows[rows[r]]) {
      ++segment;
      const TokenizedSample& s = all[part.sample];
      for (uint32_t k = 0; k < part.length; ++k, ++t) {
        const size_t i = r * T + t;
        EXPECT_EQ(b.input_ids[i], s.ids[k]);
        EXPECT_EQ(b.labels[i], s.labels[k]);
        EXPECT_EQ(b.position_ids[i], static_cast<int32_t>(k));
        EXPECT_EQ(b.segment_ids[i], segment);
        labels += s.labels[k] != kIgnoreIndex;
      }
      // The sample's last kept position never predicts the next sample's first token.
      if (part.length == s.ids.size()) {
        EXPECT_EQ(b.labels[r * T + t - 1], kIgnoreIndex);
      }
    }
    for (; t < T; ++t) {
      EXPECT_EQ(b.segment_ids[r * T + t], 0);
      EXPECT_EQ(b.labels[r * T + t], kIgnoreIndex);
      EXPECT_EQ(b.input_ids[r * T + t], -1);  // pad_id
    }
  }
  EXPECT_EQ(b.label_tokens, labels);
}

TEST(Packing, PackedRowsKeepSamplesApart) {
  const auto all = samples();
  PackingOptions options{
      .max_seq_len = 7, .packing = true, .truncation = Truncation::kTruncate, .pad_id = -1};
  const PackingPlan plan = plan_rows(all, options);
  EXPECT_EQ(plan.truncated, 1u);
  EXPECT_EQ(plan.dropped_too_long, 0u);
  // Every sample appears exactly once; no row overflows.
  std::map<uint32_t, int> seen;
  for (const auto& row : plan.rows) {
    uint32_t used = 0;
    for (const auto& p : row) {
      ++seen[p.sample];
      used += p.length;
    }
    EXPECT_LE(used, 7u);
  }
  EXPECT_EQ(seen.size(), 6u);
  // 5+3+7+2+7+4 = 28 tokens fit in 4 rows of 7 exactly under best-fit decreasing.
  EXPECT_EQ(plan.rows.size(), 4u);
  EXPECT_DOUBLE_EQ(plan.fill(), 1.0);
  std::vector<uint64_t> rows(plan.rows.size());
  std::iota(rows.begin(), rows.end(), 0);
  const Batch b = make_batch(all, plan, rows, options);
  EXPECT_EQ(b.rows, 4);
  EXPECT_EQ(b.input_ids.size(), 28u);
  check_batch_against_samples(b, all, plan, rows);
  EXPECT_NE(plan.summary().find("1 truncated"), std::string::npos) << plan.summary();
}

TEST(Packing, UnpackedRowsArePaddedOneSampleEach) {
  const auto all = samples();
  PackingOptions options{.max_seq_len = 7, .packing = false, .truncation = Truncation::kDrop, .pad_id = -1};
  const PackingPlan plan = plan_rows(all, options);
  EXPECT_EQ(plan.dropped_too_long, 1u);
  ASSERT_EQ(plan.rows.size(), 5u);
  const std::vector<uint64_t> rows = {4, 0};
  const Batch b = make_batch(all, plan, rows, options);
  check_batch_against_samples(b, all, plan, rows);
  // Row 0 of the batch is sample 5 (plan row 4, sample 4 was dropped): 4 tokens then padding positions
  // restarting at 0.
  EXPECT_EQ(std::vector<int32_t>(b.position_ids.begin(), b.position_ids.begin() + 7),
            (std::vector<int32_t>{0, 1, 2, 3, 0, 1, 2}));
  EXPECT_EQ(std::vector<int32_t>(b.segment_ids.begin(), b.segment_ids.begin() + 7),
            (std::vector<int32_t>{1, 1, 1, 1, 0, 0, 0}));
}

// A toy causal model that honours the batch contract the way the runtime's ops do: x = E[id] + P[position],
// one attention layer restricted to earlier positions of the same segment, tied output embedding, summed
// cross-entropy over labels != -100. Returns the loss summed per (row, segment).
std::map<std::pair<size_t, int32_t>, double> toy_losses(const Batch& b) {
  constexpr int kDim = 8, kVocab = 1024;
  const auto weight = [](uint64_t a, uint64_t b2) {  // deterministic pseudo-random in [-1, 1)
    uint64_t z = a * 0x9E3779B97F4A7C15ull + b2 * 0xBF58476D1CE4E5B9ull + 1;
    z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
    return static_cast<double>(z >> 11) / 4503599627370496.0 - 1.0;
  };
  const auto T = static_cast<size_t>(b.seq_len);
  std::map<std::pair<size_t, int32_t>, double> loss;
  for (size_t r = 0; r < static_cast<size_t>(b.rows); ++r) {
    std::vector<std::array<double, kDim>> x(T);
    for (size_t t = 0; t < T; ++t) {
      for (int d = 0; d < kDim; ++d) {
        x[t][d] = weight(static_cast<uint64_t>(b.input_ids[r * T + t] + 2), d) +
                  0.5 * weight(1000003 + static_cast<uint64_t>(b.position_ids[r * T + t]), d);
      }
    }
    for (size_t t = 0; t < T; ++t) {
      const size_t i = r * T + t;
      if (b.labels[i] == kIgnoreIndex) continue;
      std::vector<double> scores;
      std::vector<size_t> keys;
      for (size_t s2 = 0; s2 <= t; ++s2) {
        if (b.segment_ids[r * T + s2] != b.segment_ids[i]) continue;
        double dot = 0;
        for (int d = 0; d < kDim; ++d) dot += x[t][d] * x[s2][d];
        scores.push_back(dot / std::sqrt(double(kDim)));
        keys.push_back(s2);
      }
      const double top = *std::max_element(scores.begin(), scores.end());
      double z = 0;
      for (double& sc : scores) z += (sc = std::exp(sc - top));
      std::array<double, kDim> h{};
      for (size_t k = 0; k < keys.size(); ++k) {
        for (int d = 0; d < kDim; ++d) h[d] += scores[k] / z * x[keys[k]][d];
      }
      std::vector<double> logits(kVocab);
      for (int v = 0; v < kVocab; ++v) {
        for (int d = 0; d < kDim; ++d) logits[v] += h[d] * weight(static_cast<uint64_t>(v + 2), d);
      }
      const double m = *std::max_element(logits.begin(), logits.end());
      double sum = 0;
      for (double l : logits) sum += std::exp(l - m);
      loss[{r, b.segment_ids[i]}] += m + std::log(sum) - logits[static_cast<size_t>(b.labels[i])];
    }
  }
  return loss;
}

TEST(Packing, PackedBatchGivesTheSameLossPerSampleAsOneByOne) {
  const auto all = samples();
  PackingOptions packed{.max_seq_len = 12, .packing = true, .pad_id = 0};
  const PackingPlan plan = plan_rows(all, packed);
  ASSERT_LT(plan.rows.size(), all.size());  // really packed
  std::vector<uint64_t> rows(plan.rows.size());
  std::iota(rows.begin(), rows.end(), 0);
  const auto packed_loss = toy_losses(make_batch(all, plan, rows, packed));
  size_t compared = 0;
  for (size_t r = 0; r < plan.rows.size(); ++r) {
    int32_t segment = 0;
    for (const RowPart& part : plan.rows[r]) {
      ++segment;
      // The sample alone, in a row of its own length.
      const std::vector<TokenizedSample> one = {all[part.sample]};
      PackingOptions alone{.max_seq_len = static_cast<int32_t>(part.length), .packing = false};
      const PackingPlan one_plan = plan_rows(one, alone);
      const auto single = toy_losses(make_batch(one, one_plan, std::vector<uint64_t>{0}, alone));
      ASSERT_EQ(single.size(), 1u);
      EXPECT_NEAR(packed_loss.at({r, segment}), single.begin()->second, 1e-9) << "sample " << part.sample;
      ++compared;
    }
  }
  EXPECT_EQ(compared, all.size());
}

TEST(Packing, TruncatedSampleWithoutTrainedTokensIsDropped) {
  // 10 tokens, only the last 2 trained; cut to 6 leaves no target.
  const std::vector<TokenizedSample> all = {make_sample(0, 10, 2), make_sample(50, 4, 2)};
  const PackingPlan plan = plan_rows(all, {.max_seq_len = 6, .packing = true});
  EXPECT_EQ(plan.dropped_no_labels, 1u);
  EXPECT_EQ(plan.rows.size(), 1u);
  EXPECT_THROW((void)plan_rows(all, {.max_seq_len = 1}), Error);
  EXPECT_EQ(parse_truncation("drop"), Truncation::kDrop);
  EXPECT_THROW((void)parse_truncation("cut"), Error);
}

}  // namespace
}  // namespace engine::data
