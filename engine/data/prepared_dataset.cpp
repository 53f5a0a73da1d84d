#include "engine/data/prepared_dataset.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "engine/core/error.hpp"
#include "engine/data/dataset_cache.hpp"

namespace engine::data {

std::string tokenization_options_text(const PrepareOptions& options, const ChatTemplate& chat) {
  const DatasetFields& f = options.dataset.fields;
  nlohmann::json j = {
      {"cache_format", 1},
      {"format", static_cast<int>(options.dataset.format)},
      {"fields", {f.instruction, f.input, f.output, f.system, f.messages, f.role, f.content, f.text}},
      {"on_error", static_cast<int>(options.dataset.on_error)},
      {"train_on_prompt", options.sample.train_on_prompt},
      {"text_eos_token", options.sample.text_eos_token},
      {"chat_template", std::string(chat.name())},
      {"system_prompt", chat.system_prompt() ? nlohmann::json(*chat.system_prompt()) : nlohmann::json()},
  };
  return j.dump();
}

PreparedDataset prepare_dataset(const std::filesystem::path& data_file, const Tokenizer& tokenizer,
                                const ChatTemplate& chat, const PrepareOptions& options) {
  PreparedDataset out;
  std::optional<CacheKey> key;
  if (!options.cache_dir.empty()) {
    key = make_cache_key(options.tokenizer_file, data_file, tokenization_options_text(options, chat));
    out.cache_file = options.cache_dir / ("tokenized-" + key->hex() + ".bin");
    if (auto cached = read_cache(out.cache_file, *key)) {
      out.samples = std::move(cached->samples);
      out.skipped = cached->skipped;
      out.from_cache = true;
      spdlog::info("{}: {} tokenized samples from cache {}", data_file.string(), out.samples.size(),
                   out.cache_file.string());
    }
  }
  if (!out.from_cache) {
    Dataset dataset = read_dataset(data_file, options.dataset);
    const size_t n = dataset.examples.size();
    const bool has_chat = std::any_of(dataset.examples.begin(), dataset.examples.end(),
                                      [](const Example& e) { return !e.is_text && !e.is_tokens; });
    if (has_chat && !tokenizer.token_to_id(chat.end_of_turn())) {
      // Without it as one token the model could never learn to stop: the template does not fit the model.
      fail(
          "chat template {} ends turns with {}, which is not a token of {}; set data.chat_template to the "
          "model's family",
          chat.name(), chat.end_of_turn(), tokenizer.source());
    }
    std::vector<TokenizedSample> samples(n);
    std::vector<std::string> errors(n);
    size_t threads =
        options.threads != 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
    threads = std::min(threads, std::max<size_t>(1, n / 64));
    const auto work = [&](size_t first, size_t last) {
      for (size_t i = first; i < last; ++i) {
        try {
          samples[i] = tokenize_example(dataset.examples[i], tokenizer, chat, options.sample);
        } catch (const Error& e) {
          errors[i] = e.what();
        }
      }
    };
    std::vector<std::thread> pool;
    for (size_t t = 0; t < threads; ++t) pool.emplace_back(work, n * t / threads, n * (t + 1) / threads);
    for (auto& th : pool) th.join();
    out.skipped = dataset.skipped;
    out.samples.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      if (errors[i].empty()) {
        out.samples.push_back(std::move(samples[i]));
        continue;
      }
      if (options.dataset.on_error == OnError::kFail) fail("{}{}", errors[i], kOnErrorFailHint);
      spdlog::warn("skipping record: {}", errors[i]);
      ++out.skipped;
    }
    if (key) write_cache(out.cache_file, *key, out.samples, out.skipped);
  }
  out.plan = plan_rows(out.samples, options.packing);
  spdlog::info("{}: {}; {} record(s) skipped", data_file.string(), out.plan.summary(), out.skipped);
  return out;
}

}  // namespace engine::data
