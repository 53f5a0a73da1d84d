// SafetensorsCheckpoint: the weights of a Hugging Face model directory, one file or several shards, looked
// up by tensor name. Accepted layouts, tried in this order (the order transformers uses):
//   1. <dir>/model.safetensors
//   2. <dir>/model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor name: shard file}}
//   3. exactly one <dir>/*.safetensors of any name
// A path to a .safetensors file is accepted as well. Every shard is mapped and validated when the checkpoint
// opens (mapping is cheap; pages are read on first touch). With an index, each shard it names must exist
// and hold every tensor mapped to it (engine::Error otherwise); tensors present in a shard but absent from
// the index are unreachable by name: they are logged as a warning and listed by unindexed_tensors().
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/io/safetensors.hpp"

namespace engine::io {

class SafetensorsCheckpoint {
 public:
  // Opens a model directory (or one .safetensors file). engine::Error naming the directory, the index, the
  // shard and the tensor involved, with what would fix it.
  static SafetensorsCheckpoint open(const std::filesystem::path& path);

  // The directory the weights are in.
  const std::filesystem::path& dir() const noexcept { return dir_; }

  // The index file, when the checkpoint has one.
  const std::optional<std::filesystem::path>& index_path() const noexcept { return index_path_; }

  // Every reachable tensor name, sorted.
  const std::vector<std::string>& names() const noexcept { return names_; }

  // The tensor called `name` from whichever shard holds it, or nullopt.
  std::optional<SafetensorsTensor> find(std::string_view name) const;

  // The same, or engine::Error (ENG_ERR_NOT_FOUND) naming the directory and the closest names.
  SafetensorsTensor tensor(std::string_view name) const;

  // The file holding `name` (engine::Error when there is none).
  const SafetensorsFile& shard_of(std::string_view name) const;

  // The opened files, sorted by file name.
  const std::vector<SafetensorsFile>& shards() const noexcept { return shards_; }

  // "<shard file>: <tensor>" for tensors that shards hold but the index does not list.
  const std::vector<std::string>& unindexed_tensors() const noexcept { return unindexed_; }

 private:
  void open_index(const std::filesystem::path& index);
  void add_whole_file(const std::filesystem::path& file);

  std::filesystem::path dir_;
  std::optional<std::filesystem::path> index_path_;
  std::vector<SafetensorsFile> shards_;
  std::unordered_map<std::string, size_t> shard_by_name_;  // tensor name -> index into shards_
  std::vector<std::string> names_;
  std::vector<std::string> unindexed_;
};

}  // namespace engine::io
