#include "engine/cli/hub_sources.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "engine/core/error.hpp"
#include "engine/data/data_sources.hpp"
#include "engine/hub/hub_cache.hpp"
#include "engine/hub/hub_download.hpp"

namespace engine::cli {

namespace fs = std::filesystem;

namespace {

// What a run takes of a model repo and of a dataset repo (huggingface_hub's allow_patterns).
const std::vector<std::string> kModelFiles = {"*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"};
const std::vector<std::string> kDatasetFiles = {"*.json", "*.jsonl", "*.csv"};

// A dataset repo with Parquet files and no JSON / JSONL / CSV: refused before downloading anything.
void refuse_parquet_only(const std::string& key, const hub::HubId& id, const std::vector<std::string>& files) {
  bool data = false;
  std::string parquet;
  for (const std::string& f : files) {
    if (data::is_data_file(f)) data = true;
    if (f.size() > 8 && f.substr(f.size() - 8) == ".parquet" && parquet.empty()) parquet = f;
  }
  if (data || parquet.empty()) return;
  fail("{} {} has only Parquet files (e.g. {}), which the engine does not read; convert them to JSONL, e.g. "
       "python3 -c \"from datasets import load_dataset; load_dataset('{}', split='train').to_json('train.jsonl', "
       "force_ascii=False)\" (or pandas.read_parquet(...).to_json(..., orient='records', lines=True)), and set "
       "{} to the .jsonl file",
       key, id.str(), parquet, id.repo, key);
}

fs::path resolve_one(const std::string& key, const std::string& text, hub::RepoType type,
                     const HubSourceOptions& options) {
  hub::HubId id = *hub::parse_hub_id(text, type);
  const char* kind = type == hub::RepoType::kDataset ? "dataset" : "model";
  const std::string fetch = hub::download_command(id);
  std::optional<hub::CachedSnapshot> cached = hub::find_cached_snapshot(id);
  if (options.download && !options.offline) {
    hub::DownloadOptions d;
    d.include = type == hub::RepoType::kDataset ? kDatasetFiles : kModelFiles;
    try {
      if (type == hub::RepoType::kDataset) refuse_parquet_only(key, id, hub::list_repo_files(id).files);
      hub::DownloadResult r = hub::download_snapshot(id, d);
      if (r.fetched > 0) spdlog::info("{} {}: {} files fetched into {}", key, id.str(), r.fetched, r.snapshot.string());
      return r.snapshot;
    } catch (const hub::HubUnreachable& e) {
      if (!cached) {
        fail_with(ENG_ERR_IO,
                  "{} {} is a Hub {} id that is not in the Hugging Face cache ({}) nor ModelScope's ({}), and "
                  "the Hub is unreachable: {}. The run needs {}; fetch it where there is a network with `{}` "
                  "(or `huggingface-cli download {}{}`) and copy the cache folder here, or set HF_ENDPOINT "
                  "to a reachable mirror",
                  key, id.str(), kind, hub::hf_hub_cache().string(), hub::modelscope_cache().string(), e.what(),
                  type == hub::RepoType::kDataset ? "its JSON/JSONL/CSV files" : "config.json, tokenizer.json and the *.safetensors weights",
                  fetch, id.repo, type == hub::RepoType::kDataset ? " --repo-type dataset" : "");
      }
      spdlog::warn("{} {}: the Hub is unreachable ({}); using the copy in {}", key, id.str(), e.what(), cached->where);
    }
  }
  if (!cached) {
    fail_with(ENG_ERR_IO, "{} {} is not in the Hugging Face cache ({}) nor ModelScope's ({}){}; fetch it with `{}`",
              key, id.str(), hub::hf_hub_cache().string(), hub::modelscope_cache().string(),
              options.offline ? " and downloads are off (HF_HUB_OFFLINE=1 or --offline)" : "", fetch);
  }
  if (type == hub::RepoType::kModel && !fs::exists(cached->path / "config.json")) {
    fail_with(ENG_ERR_IO, "{} {}: the snapshot {} in {} has no config.json; fetch it with `{}`", key, id.str(),
              cached->path.string(), cached->where, fetch);
  }
  spdlog::info("{} {}: {} ({})", key, id.str(), cached->path.string(), cached->where);
  return cached->path;
}

}  // namespace

void resolve_hub_sources(recipe::Recipe& r, const HubSourceOptions& options) {
  if (!r.model.hub_id.empty()) r.model.path = resolve_one("model.path", r.model.hub_id, hub::RepoType::kModel, options);
  for (const char* key : {"train", "eval"}) {
    for (recipe::DataSourceSpec& s : std::string(key) == "train" ? r.data.train : r.data.eval) {
      const std::string what = std::string("data.") + key + " " + s.text;
      if (!s.hub_id.empty()) s.path = resolve_one(std::string("data.") + key, s.hub_id, hub::RepoType::kDataset, options);
      std::error_code ec;
      if (fs::is_directory(s.path, ec)) s.path = data::dataset_file_in(s.path, key, what);
    }
  }
}

}  // namespace engine::cli
