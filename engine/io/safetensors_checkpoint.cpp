#include "engine/io/safetensors_checkpoint.hpp"

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/core/error.hpp"
#include "engine/io/closest_names.hpp"

namespace engine::io {
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

bool is_existing_file(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

std::vector<std::filesystem::path> safetensors_files_in(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors" && is_existing_file(entry.path()))
      out.push_back(entry.path());
  }
  if (ec) fail_with(ENG_ERR_IO, "cannot list the model directory {}: {}", dir.string(), ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_with(ENG_ERR_IO, "cannot read {}", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A shard file name from an index must stay inside the model directory.
void check_shard_name(const std::filesystem::path& index, const std::string& tensor,
                      const std::string& shard) {
  const std::filesystem::path p(shard);
  bool escapes = shard.empty() || p.is_absolute();
  for (const auto& part : p) escapes = escapes || part == "..";
  if (escapes) {
    fail("{}: tensor '{}' is mapped to shard \"{}\"; shards must be file names inside the model directory",
         index.string(), tensor, shard);
  }
}

}  // namespace

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::filesystem::path& path) {
  SafetensorsCheckpoint ckpt;
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    fail_with(ENG_ERR_NOT_FOUND, "model directory {} does not exist (check the model path in the recipe)",
              path.string());
  }
  if (std::filesystem::is_regular_file(status)) {
    if (path.extension() != ".safetensors") {
      fail("{} is a file but not a .safetensors file; give the model directory or a .safetensors file",
           path.string());
    }
    ckpt.dir_ = path.parent_path();
    ckpt.add_whole_file(path);
  } else {
    ckpt.dir_ = path;
    if (is_existing_file(path / kSingleFile)) {
      ckpt.add_whole_file(path / kSingleFile);
    } else if (is_existing_file(path / kIndexFile)) {
      ckpt.open_index(path / kIndexFile);
    } else {
      const auto files = safetensors_files_in(path);
      if (files.size() == 1) {
        ckpt.add_whole_file(files.front());
      } else if (files.empty()) {
        fail_with(
            ENG_ERR_NOT_FOUND,
            "{} has no {}, no {} and no other *.safetensors file: it is not a Hugging Face model directory "
            "with safetensors weights (convert .bin weights with the safetensors package)",
            path.string(), kSingleFile, kIndexFile);
      } else {
        std::vector<std::string> shown;
        for (const auto& f : files) shown.push_back(f.filename().string());
        fail(
            "{} has {} *.safetensors files ({}) but no {} saying which tensor is in which; add the index "
            "(transformers writes one with save_pretrained) or keep only one file",
            path.string(), files.size(), fmt::join(shown, ", "), kIndexFile);
      }
    }
  }
  for (const auto& [name, _] : ckpt.shard_by_name_) ckpt.names_.push_back(name);
  std::sort(ckpt.names_.begin(), ckpt.names_.end());
  return ckpt;
}

void SafetensorsCheckpoint::add_whole_file(const std::filesystem::path& file) {
  shards_.push_back(SafetensorsFile::open(file));
  for (const std::string_view name : shards_.back().names()) shard_by_name_.emplace(name, shards_.size() - 1);
}

void SafetensorsCheckpoint::open_index(const std::filesystem::path& index) {
  index_path_ = index;
  const std::string text = read_text(index);
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({}); re-download the model's index file", index.string(), e.what());
  }
  if (!json.is_object() || !json.contains("weight_map") || !json["weight_map"].is_object()) {
    fail("{}: expected a JSON object with a \"weight_map\" object (tensor name -> shard file)",
         index.string());
  }
  // shard file -> tensors the index puts there
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [tensor, shard] : json["weight_map"].items()) {
    if (!shard.is_string()) {
      fail("{}: \"weight_map\" entry '{}' is a JSON {}; it must be the shard's file name", index.string(),
           tensor, shard.type_name());
    }
    check_shard_name(index, tensor, shard.get<std::string>());
    by_shard[shard.get<std::string>()].push_back(tensor);
  }
  if (by_shard.empty()) fail("{}: \"weight_map\" is empty; the index lists no tensors", index.string());

  for (const auto& [shard, tensors] : by_shard) {
    const std::filesystem::path shard_path = dir_ / shard;
    if (!is_existing_file(shard_path)) {
      fail_with(ENG_ERR_NOT_FOUND,
                "{}: {} tensors (e.g. '{}') are in shard \"{}\", but {} does not exist; the download is "
                "incomplete: fetch the missing shard",
                index.string(), tensors.size(), tensors.front(), shard, shard_path.string());
    }
    shards_.push_back(SafetensorsFile::open(shard_path));
    const SafetensorsFile& file = shards_.back();
    for (const std::string& tensor : tensors) {
      if (!file.find(tensor)) {
        const auto close = closest_names(tensor, file.names(), 3);
        fail_with(
            ENG_ERR_NOT_FOUND,
            "{}: tensor '{}' is mapped to shard \"{}\", but {} has no such tensor{}{}; the index and the "
            "shards do not belong together: re-download the model",
            index.string(), tensor, shard, shard_path.string(), close.empty() ? "" : " (closest: ",
            close.empty() ? std::string() : fmt::format("{})", fmt::join(close, ", ")));
      }
      shard_by_name_.emplace(tensor, shards_.size() - 1);
    }
    for (const std::string_view name : file.names()) {
      const auto it = shard_by_name_.find(std::string(name));
      if (it == shard_by_name_.end() || it->second != shards_.size() - 1) {
        unindexed_.push_back(fmt::format("{}: {}", shard, name));
      }
    }
  }
  if (!unindexed_.empty()) {
    spdlog::warn("{}: {} tensors in the shards are not in the index and cannot be loaded by name (e.g. {})",
                 index.string(), unindexed_.size(), unindexed_.front());
  }
}

std::optional<SafetensorsTensor> SafetensorsCheckpoint::find(std::string_view name) const {
  const auto it = shard_by_name_.find(std::string(name));
  if (it == shard_by_name_.end()) return std::nullopt;
  return shards_[it->second].find(name);
}

SafetensorsTensor SafetensorsCheckpoint::tensor(std::string_view name) const {
  if (auto t = find(name)) return *t;
  const std::vector<std::string_view> all(names_.begin(), names_.end());
  const auto close = closest_names(name, all, 3);
  fail_with(ENG_ERR_NOT_FOUND, "{}: the checkpoint has no tensor named '{}' ({} tensors{}{})", dir_.string(),
            name, names_.size(), close.empty() ? "" : "; closest: ", fmt::join(close, ", "));
}

const SafetensorsFile& SafetensorsCheckpoint::shard_of(std::string_view name) const {
  const auto it = shard_by_name_.find(std::string(name));
  if (it == shard_by_name_.end()) {
    fail_with(ENG_ERR_NOT_FOUND, "{}: the checkpoint has no tensor named '{}'", dir_.string(), name);
  }
  return shards_[it->second];
}

}  // namespace engine::io
