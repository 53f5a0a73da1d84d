#include "engine/train/tensorboard_writer.hpp"

#include <unistd.h>

#include <array>
#include <chrono>

#include "engine/core/error.hpp"
#include "engine/train/tensorboard_event.pb.h"

namespace engine::train {

namespace fs = std::filesystem;

namespace {

// The reflected CRC-32C table (polynomial 0x82F63B78).
constexpr std::array<uint32_t, 256> crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

double now_wall() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  static constexpr std::array<uint32_t, 256> table = crc32c_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const fs::path& dir, double wall_time_s, const std::string& file_suffix) {
  fs::create_directories(dir);
  const double t = wall_time_s >= 0 ? wall_time_s : now_wall();
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  std::string name = file_suffix.empty()
                         ? fmt::format("events.out.tfevents.{}.{}.{}", static_cast<int64_t>(t), host, getpid())
                         : "events.out.tfevents." + file_suffix;
  for (int n = 0; fs::exists(dir / name); ++n) name = fmt::format("{}.{}", name, n);
  path_ = dir / name;
  out_.open(path_, std::ios::binary | std::ios::trunc);
  if (!out_) fail_with(ENG_ERR_IO, "cannot write the TensorBoard event file {}", path_.string());
  tensorboard::Event e;
  e.set_wall_time(t);
  e.set_file_version("brain.Event:2");
  record(e.SerializeAsString());
}

void TensorBoardWriter::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values,
                                double wall_time_s) {
  tensorboard::Event e;
  e.set_wall_time(wall_time_s >= 0 ? wall_time_s : now_wall());
  e.set_step(step);
  tensorboard::Summary* s = e.mutable_summary();
  for (const auto& [tag, v] : values) {
    tensorboard::Summary::Value* val = s->add_value();
    val->set_tag(tag);
    val->set_simple_value(static_cast<float>(v));
  }
  record(e.SerializeAsString());
}

void TensorBoardWriter::record(const std::string& bytes) {
  unsigned char header[12];
  const uint64_t len = bytes.size();
  for (int i = 0; i < 8; ++i) header[i] = static_cast<unsigned char>(len >> (8 * i));
  const uint32_t len_crc = masked_crc32c(header, 8);
  for (int i = 0; i < 4; ++i) header[8 + i] = static_cast<unsigned char>(len_crc >> (8 * i));
  const uint32_t data_crc = masked_crc32c(bytes.data(), bytes.size());
  unsigned char footer[4];
  for (int i = 0; i < 4; ++i) footer[i] = static_cast<unsigned char>(data_crc >> (8 * i));
  out_.write(reinterpret_cast<const char*>(header), 12);
  out_.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out_.write(reinterpret_cast<const char*>(footer), 4);
  out_.flush();
  if (!out_) fail_with(ENG_ERR_IO, "cannot write the TensorBoard event file {}", path_.string());
}

}  // namespace engine::train
