// Rows of max_seq_len tokens from tokenized samples, and the (B, T) batches the trainer feeds the model.
//
// packing = true: samples are packed best-fit-decreasing into rows (several per row); each sample keeps its
// own position ids (restarting at 0) and a distinct segment id (1, 2, ... within the row), so the runtime's
// attention (eng_batch.segment_ids) never crosses samples; padding is segment 0 with label -100. Because
// labels are shifted per sample (tokenized_sample.hpp) a sample's last position never predicts the next one.
// packing = false: one sample per row, padded to max_seq_len.
// Samples longer than max_seq_len are cut to their first max_seq_len tokens (truncation = kTruncate) or
// left out (kDrop); a truncated sample that keeps no trained token is left out too. PackingPlan counts all.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/data/tokenized_sample.hpp"

namespace engine::data {

enum class Truncation { kTruncate, kDrop };
// data.truncation = "truncate" | "drop".
Truncation parse_truncation(const std::string& name);

struct PackingOptions {
  int32_t max_seq_len = 2048;  // T
  bool packing = false;
  Truncation truncation = Truncation::kTruncate;
  int32_t pad_id = 0;  // input id of padding positions (never a target)
};

struct RowPart {
  uint32_t sample = 0;  // index into the samples
  uint32_t length = 0;  // tokens kept (<= T)
};

struct PackingPlan {
  int32_t seq_len = 0;
  std::vector<std::vector<RowPart>> rows;  // each row's samples, in position order
  size_t samples_in = 0;
  size_t truncated = 0;          // kept, but cut to max_seq_len
  size_t dropped_too_long = 0;   // truncation = kDrop
  size_t dropped_no_labels = 0;  // cut so far that no trained token remained
  int64_t tokens = 0;            // non-padding positions over all rows
  double fill() const { return rows.empty() ? 0.0 : double(tokens) / (double(rows.size()) * seq_len); }
  std::string summary() const;  // one line for the run's start-up report
};

// Plans the rows; deterministic for given samples and options.
PackingPlan plan_rows(std::span<const TokenizedSample> samples, const PackingOptions& options);

// A training batch, all arrays (B, T) row-major int32.
struct Batch {
  int32_t rows = 0;     // B
  int32_t seq_len = 0;  // T
  std::vector<int32_t> input_ids;
  std::vector<int32_t> labels;        // shifted targets, -100 where nothing is trained
  std::vector<int32_t> position_ids;  // restart at 0 for every sample
  std::vector<int32_t> segment_ids;   // 1.. per sample in a row, 0 for padding
  int64_t label_tokens = 0;           // labels != -100 (the loss normaliser's share of this batch)
};

// Builds the batch of the given rows of `plan` (row_indices: B entries, e.g. from ShardedSampler).
Batch make_batch(std::span<const TokenizedSample> samples, const PackingPlan& plan,
                 std::span<const uint64_t> row_indices, const PackingOptions& options);

}  // namespace engine::data
