// DataPipeline: a recipe's [data] section turned into the micro-batches of a run. The training set is read,
// tokenized with loss labels (already shifted; prompt tokens -100 unless data.train_on_prompt) and planned
// into rows of data.max_seq_len (packed or padded); a ShardedSampler draws rows in a seeded order, epoch
// after epoch, and its cursor is what checkpoints save. The evaluation set (data.eval) is read the same way
// and always visited in order.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "engine/data/chat_template.hpp"
#include "engine/data/packing.hpp"
#include "engine/data/prepared_dataset.hpp"
#include "engine/data/sampler.hpp"
#include "engine/data/tokenizer.hpp"
#include "engine/recipe/recipe.hpp"

namespace engine::train {

class DataPipeline {
 public:
  // Reads and tokenizes the datasets (a cache under <output_dir>/.data-cache makes a second run start fast).
  explicit DataPipeline(const recipe::Recipe& recipe, int32_t rank = 0, int32_t world_size = 1);

  // Rows of the training set this rank visits per epoch.
  uint64_t rows_per_epoch() const { return sampler_->items_per_rank(); }
  // The next micro-batch of `rows` rows (B = rows, T = data.max_seq_len).
  data::Batch next(int32_t rows);
  // The evaluation set in batches of `rows` rows (empty without data.eval).
  std::vector<data::Batch> eval_batches(int32_t rows) const;
  bool has_eval() const { return eval_.has_value(); }

  nlohmann::json cursor() const { return sampler_->state_json(); }
  void restore(const nlohmann::json& cursor) { sampler_->restore_json(cursor); }

  const data::Tokenizer& tokenizer() const { return tokenizer_; }
  const data::ChatTemplate& chat() const { return *chat_; }
  const data::PackingOptions& packing() const { return options_.packing; }
  const data::PreparedDataset& train_set() const { return train_; }

 private:
  data::Tokenizer tokenizer_;
  std::optional<data::ChatTemplate> chat_;
  data::PrepareOptions options_;
  data::PreparedDataset train_;
  std::optional<data::PreparedDataset> eval_;
  std::unique_ptr<data::ShardedSampler> sampler_;
};

}  // namespace engine::train
