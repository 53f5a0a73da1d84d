#include "engine/train/data_pipeline.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <numeric>

#include "engine/core/error.hpp"
#include "engine/data/data_sources.hpp"

namespace engine::train {

namespace fs = std::filesystem;

DataPipeline::DataPipeline(const recipe::Recipe& recipe, int32_t rank, int32_t world_size) {
  const recipe::DataSection& d = recipe.data;
  tokenizer_ = data::Tokenizer::from_file(recipe.model.path);
  if (d.chat_template == "auto" || d.chat_template.empty()) {
    chat_ = data::ChatTemplate::from_tokenizer_config(recipe.model.path);
  } else if (d.chat_template != "none") {
    chat_ = data::ChatTemplate::by_name(d.chat_template);
  } else {
    chat_ = data::ChatTemplate::by_name("chatml");  // only plain-text samples are expected with "none"
  }
  if (!d.system_prompt.empty()) chat_->set_system_prompt(d.system_prompt);

  options_.dataset.format = data::parse_dataset_format(d.format);
  options_.dataset.on_error = data::parse_on_error(d.on_error);
  options_.sample.train_on_prompt = d.train_on_prompt;
  options_.packing.max_seq_len = static_cast<int32_t>(d.max_seq_len);
  options_.packing.packing = d.packing;
  options_.packing.truncation = data::parse_truncation(d.truncation);
  if (auto eot = tokenizer_.token_to_id(std::string(chat_->end_of_turn()))) options_.packing.pad_id = *eot;
  options_.cache_dir = recipe.train.output_dir / ".data-cache";
  options_.tokenizer_file =
      fs::is_directory(recipe.model.path) ? recipe.model.path / "tokenizer.json" : recipe.model.path;

  auto sources = [](const std::vector<recipe::DataSourceSpec>& specs) {
    std::vector<data::DataSource> out;
    for (const recipe::DataSourceSpec& s : specs) {
      if (s.path.empty()) fail("data source {} is a Hub id that was not resolved to a file", s.text);
      out.push_back({s.path, s.count, s.weight, s.text});
    }
    return out;
  };
  const uint64_t seed = static_cast<uint64_t>(recipe.train.seed);
  const fs::path train_file = data::materialise_sources(sources(d.train), seed, options_.cache_dir);
  train_ = data::prepare_dataset(train_file, tokenizer_, *chat_, options_);
  if (train_.plan.rows.empty()) {
    fail("data.train {} gave no training rows ({}); check data.format and data.max_seq_len", train_file.string(),
         train_.plan.summary());
  }
  if (train_.from_cache)
    spdlog::info("data: tokenized samples read from the cache {}", train_.cache_file.string());
  if (!d.eval.empty()) {
    data::PrepareOptions eo = options_;
    eo.packing.packing = false;  // evaluation rows one sample each
    eval_ = data::prepare_dataset(data::materialise_sources(sources(d.eval), seed, options_.cache_dir), tokenizer_,
                                  *chat_, eo);
  }
  data::ShardedSampler::Options so;
  so.num_items = train_.plan.rows.size();
  so.seed = static_cast<uint64_t>(recipe.train.seed);
  so.rank = rank;
  so.world_size = world_size;
  so.shuffle = true;
  sampler_ = std::make_unique<data::ShardedSampler>(so);
}

data::Batch DataPipeline::next(int32_t rows) {
  std::vector<uint64_t> idx = sampler_->next_batch(static_cast<size_t>(rows));
  return data::make_batch(train_.samples, train_.plan, idx, options_.packing);
}

std::vector<data::Batch> DataPipeline::eval_batches(int32_t rows) const {
  std::vector<data::Batch> out;
  if (!eval_) return out;
  const size_t n = eval_->plan.rows.size();
  for (size_t first = 0; first < n; first += static_cast<size_t>(rows)) {
    std::vector<uint64_t> idx;
    for (size_t i = first; i < std::min(n, first + static_cast<size_t>(rows)); ++i) idx.push_back(i);
    data::PackingOptions po = options_.packing;
    po.packing = false;
    out.push_back(data::make_batch(eval_->samples, eval_->plan, idx, po));
  }
  return out;
}

}  // namespace engine::train
