#include "engine/data/packing.hpp"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "engine/core/error.hpp"

namespace engine::data {

Truncation parse_truncation(const std::string& name) {
  if (name == "truncate") return Truncation::kTruncate;
  if (name == "drop") return Truncation::kDrop;
  fail("data.truncation = \"{}\" is unknown (known: truncate, drop)", name);
}

std::string PackingPlan::summary() const {
  return fmt::format(
      "{} samples -> {} rows of {} tokens ({:.1f}% filled); {} truncated, {} dropped as too long, {} dropped "
      "with "
      "no trained token left",
      samples_in, rows.size(), seq_len, 100.0 * fill(), truncated, dropped_too_long, dropped_no_labels);
}

PackingPlan plan_rows(std::span<const TokenizedSample> samples, const PackingOptions& options) {
  if (options.max_seq_len < 2) fail("data.max_seq_len must be at least 2, got {}", options.max_seq_len);
  const auto T = static_cast<size_t>(options.max_seq_len);
  PackingPlan plan;
  plan.seq_len = options.max_seq_len;
  plan.samples_in = samples.size();
  std::vector<RowPart> kept;
  kept.reserve(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    const TokenizedSample& s = samples[i];
    size_t length = s.ids.size();
    if (length > T) {
      if (options.truncation == Truncation::kDrop) {
        ++plan.dropped_too_long;
        continue;
      }
      length = T;
      if (!std::any_of(s.labels.begin(), s.labels.begin() + static_cast<ptrdiff_t>(T),
                       [](int32_t l) { return l != kIgnoreIndex; })) {
        ++plan.dropped_no_labels;
        continue;
      }
      ++plan.truncated;
    }
    if (length == 0) continue;
    kept.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(length)});
    plan.tokens += static_cast<int64_t>(length);
  }
  if (!options.packing) {
    for (const RowPart& part : kept) plan.rows.push_back({part});
    return plan;
  }
  // Best-fit decreasing: longest first, each into the row with the least room that still fits it.
  std::stable_sort(kept.begin(), kept.end(),
                   [](const RowPart& a, const RowPart& b) { return a.length > b.length; });
  std::multiset<std::pair<size_t, size_t>> room;  // (free positions, row)
  for (const RowPart& part : kept) {
    const auto it = room.lower_bound({part.length, 0});
    if (it == room.end()) {
      plan.rows.push_back({part});
      if (T - part.length > 0) room.insert({T - part.length, plan.rows.size() - 1});
    } else {
      const auto [free, row] = *it;
      room.erase(it);
      plan.rows[row].push_back(part);
      if (free - part.length > 0) room.insert({free - part.length, row});
    }
  }
  return plan;
}

Batch make_batch(std::span<const TokenizedSample> samples, const PackingPlan& plan,
                 std::span<const uint64_t> row_indices, const PackingOptions& options) {
  Batch b;
  b.rows = static_cast<int32_t>(row_indices.size());
  b.seq_len = plan.seq_len;
  const auto T = static_cast<size_t>(plan.seq_len);
  const size_t n = row_indices.size() * T;
  b.input_ids.assign(n, options.pad_id);
  b.labels.assign(n, kIgnoreIndex);
  b.position_ids.assign(n, 0);
  b.segment_ids.assign(n, 0);
  for (size_t r = 0; r < row_indices.size(); ++r) {
    if (row_indices[r] >= plan.rows.size())
      fail("batch row {} is out of range ({} rows)", row_indices[r], plan.rows.size());
    size_t t = r * T;  // (B, T) row-major: row r starts at r * T
    int32_t segment = 0;
    for (const RowPart& part : plan.rows[row_indices[r]]) {
      const TokenizedSample& s = samples[part.sample];
      ++segment;
      for (uint32_t k = 0; k < part.length; ++k, ++t) {
        b.input_ids[t] = s.ids[k];
        b.labels[t] = s.labels[k];
        b.position_ids[t] = static_cast<int32_t>(k);
        b.segment_ids[t] = segment;
        b.label_tokens += s.labels[k] != kIgnoreIndex;
      }
    }
    for (int32_t k = 0; t < (r + 1) * T; ++t, ++k) b.position_ids[t] = k;  // padding: its own positions
  }
  return b;
}

}  // namespace engine::data
