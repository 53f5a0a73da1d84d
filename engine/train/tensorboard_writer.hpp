// TensorBoardWriter: scalars as TensorBoard event files, <output_dir>/runs/events.out.tfevents.<time>.<host>.
// <pid>.<n> (log.tensorboard = true). Each record is TFRecord-framed, as TensorFlow's RecordWriter does:
//   uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | Event bytes | uint32 masked_crc32c(Event)
// with masked_crc32c(x) = rotate_right(crc32c(x), 15) + 0xa282ead8. The first Event says file_version
// "brain.Event:2"; each later one holds one step's scalars in a Summary (tensorboard_event.proto). Tags,
// as transformers' Trainer names them: train/loss, train/learning_rate, train/grad_norm, train/tokens_per_s,
// train/memory_gib, eval/loss, eval/perplexity. Every record is flushed, so a killed run keeps its curves.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace engine::train {

// CRC-32C (Castagnoli), as TFRecord frames use it; and its mask.
uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);

class TensorBoardWriter {
 public:
  // Creates `dir` and a new event file in it. wall_time_s < 0: the clock; tests pass fixed times through
  // the `wall_time` arguments instead.
  explicit TensorBoardWriter(const std::filesystem::path& dir, double wall_time_s = -1.0,
                             const std::string& file_suffix = "");
  // One Event with these scalars at `step`.
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values, double wall_time_s = -1.0);
  const std::filesystem::path& path() const { return path_; }

 private:
  void record(const std::string& bytes);
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace engine::train
