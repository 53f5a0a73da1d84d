// The data path of a run in one call: read the dataset, tokenize it with loss labels (in parallel), or load
// the same from the tokenized-data cache, then plan the rows (packing or padding). The trainer then draws
// row indices from a ShardedSampler over plan.rows.size() and builds batches with make_batch.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/data/chat_template.hpp"
#include "engine/data/dataset.hpp"
#include "engine/data/packing.hpp"
#include "engine/data/tokenized_sample.hpp"
#include "engine/data/tokenizer.hpp"

namespace engine::data {

struct PrepareOptions {
  DatasetOptions dataset;
  SampleOptions sample;
  PackingOptions packing;
  std::filesystem::path
      cache_dir;  // where the cache file goes (e.g. <output_dir>/.data-cache); empty: no cache
  std::filesystem::path tokenizer_file;  // the tokenizer's file (for the cache key)
  size_t threads = 0;                    // 0: all hardware threads
};

struct PreparedDataset {
  std::vector<TokenizedSample> samples;
  PackingPlan plan;
  size_t skipped = 0;  // records skipped (malformed, or nothing to train on)
  bool from_cache = false;
  std::filesystem::path cache_file;
};

PreparedDataset prepare_dataset(const std::filesystem::path& data_file, const Tokenizer& tokenizer,
                                const ChatTemplate& chat, const PrepareOptions& options);

// The text the cache key hashes besides the two files: every option that changes the tokenized samples.
std::string tokenization_options_text(const PrepareOptions& options, const ChatTemplate& chat);

}  // namespace engine::data
