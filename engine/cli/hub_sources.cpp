#include "engine/cli/hub_sources.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "engine/core/error.hpp"
#include "engine/hub/hub_cache.hpp"
#include "engine/hub/hub_download.hpp"

namespace engine::cli {

namespace fs = std::filesystem;

namespace {

// What a run takes of a model repo and of a dataset repo (huggingface_hub's allow_patterns).
const std::vector<std::string> kModelFiles = {"*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"};
const std::vector<std::string> kDatasetFiles = {"*.json", "*.jsonl", "*.parquet"};

std::string lower_ext(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return e;
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

fs::path dataset_file_in(const fs::path& folder, const std::string& role, const std::string& what) {
  std::vector<fs::path> data, parquet;
  for (const auto& e : fs::recursive_directory_iterator(folder, fs::directory_options::follow_directory_symlink)) {
    if (!fs::is_regular_file(e.path())) continue;  // follows the cache's symlinks
    const std::string rel = e.path().lexically_relative(folder).string();
    if (rel.rfind('.', 0) == 0) continue;  // .gitattributes, .cache/
    const std::string ext = lower_ext(e.path());
    const std::string name = e.path().filename().string();
    if (ext == ".parquet") parquet.push_back(e.path());
    if ((ext == ".json" || ext == ".jsonl") && name != "dataset_info.json" && name != "dataset_infos.json" &&
        name != "state.json")
      data.push_back(e.path());
  }
  std::sort(data.begin(), data.end());
  if (data.empty() && !parquet.empty()) {
    fail("{}: {} holds only Parquet files ({}), which the engine does not read; convert them to JSONL, e.g. "
         "python3 -c \"import pandas as pd; pd.read_parquet('{}').to_json('train.jsonl', orient='records', "
         "lines=True, force_ascii=False)\" and set the .jsonl file as the data path",
         what, folder.string(), parquet.front().lexically_relative(folder).string(), parquet.front().string());
  }
  if (data.empty()) fail("{}: {} holds no JSON or JSONL data file", what, folder.string());
  if (data.size() == 1) return data.front();
  std::vector<fs::path> named;
  for (const fs::path& p : data) {
    if (p.filename().string().find(role) != std::string::npos) named.push_back(p);
  }
  if (named.size() == 1) return named.front();
  std::string list;
  for (const fs::path& p : data) list += (list.empty() ? "" : ", ") + p.lexically_relative(folder).string();
  fail("{}: {} holds several data files ({}); set the path of the one to use (the snapshot folder is {})", what,
       folder.string(), list, folder.string());
}

void resolve_hub_sources(recipe::Recipe& r, const HubSourceOptions& options) {
  if (!r.model.hub_id.empty()) r.model.path = resolve_one("model.path", r.model.hub_id, hub::RepoType::kModel, options);
  if (!r.data.train_hub_id.empty()) {
    fs::path dir = resolve_one("data.train", r.data.train_hub_id, hub::RepoType::kDataset, options);
    r.data.train = dataset_file_in(dir, "train", "data.train " + r.data.train_hub_id);
  }
  if (!r.data.eval_hub_id.empty()) {
    fs::path dir = resolve_one("data.eval", r.data.eval_hub_id, hub::RepoType::kDataset, options);
    r.data.eval = dataset_file_in(dir, "eval", "data.eval " + r.data.eval_hub_id);
  }
}

}  // namespace engine::cli
