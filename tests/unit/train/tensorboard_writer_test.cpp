// engine/train/tensorboard_writer: CRC-32C, TFRecord framing, Event/Summary messages. The event file written
// with fixed wall times must equal the committed fixture byte for byte, and what this test reads back from it
// (both CRCs of every record checked, the Events parsed by protobuf) must equal what the Python `tensorboard`
// package's EventAccumulator read from that same file (expected.json; scripts/fixtures/make_tensorboard_fixture.py
// writes both: it runs this test with ENGINE_WRITE_TB_FIXTURE set, then the Python reader).
#include "engine/train/tensorboard_writer.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/train/tensorboard_event.pb.h"

namespace engine::train {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

uint32_t le32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<size_t>(i)]);
  return v;
}

// Every Event of a TFRecord file; fails the test on a bad frame or CRC.
std::vector<tensorboard::Event> read_events(const fs::path& file) {
  const std::string s = read_bytes(file);
  std::vector<tensorboard::Event> out;
  size_t at = 0;
  while (at < s.size()) {
    EXPECT_LE(at + 12, s.size()) << "truncated header";
    if (at + 12 > s.size()) break;
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | static_cast<unsigned char>(s[at + static_cast<size_t>(i)]);
    EXPECT_EQ(le32(s, at + 8), masked_crc32c(s.data() + at, 8)) << "length CRC at " << at;
    EXPECT_LE(at + 12 + len + 4, s.size()) << "truncated record";
    const std::string data = s.substr(at + 12, len);
    EXPECT_EQ(le32(s, at + 12 + len), masked_crc32c(data.data(), data.size())) << "data CRC at " << at;
    tensorboard::Event e;
    EXPECT_TRUE(e.ParseFromString(data));
    out.push_back(e);
    at += 12 + len + 4;
  }
  return out;
}

// The scalars the fixture holds: two training steps and an evaluation, at fixed wall times.
fs::path write_fixture_events(const fs::path& dir) {
  TensorBoardWriter w(dir, 1700000000.0, "fixture");
  w.scalars(1, {{"train/loss", 2.5}, {"train/learning_rate", 1e-4}, {"train/grad_norm", 0.75},
                {"train/tokens_per_s", 12345.5}, {"train/memory_gib", 1.25}},
            1700000001.5);
  w.scalars(2, {{"train/loss", 2.125}, {"train/learning_rate", 2e-4}, {"train/grad_norm", 0.5},
                {"train/tokens_per_s", 13000.0}, {"train/memory_gib", 1.5}},
            1700000002.25);
  w.scalars(2, {{"eval/loss", 2.25}, {"eval/perplexity", 9.487735836358526}}, 1700000003.0);
  return w.path();
}

TEST(TensorBoard, Crc32cCheckValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value (RFC 3720)
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(TensorBoard, WritesWhatTensorBoardReads) {
  const fs::path fixture = fs::path(std::getenv("ENGINE_TEST_DATA")) / "train" / "tensorboard";
  if (const char* out = std::getenv("ENGINE_WRITE_TB_FIXTURE")) {  // the fixture script's first step
    fs::create_directories(out);
    fs::remove(fs::path(out) / "events.out.tfevents.fixture");
    write_fixture_events(out);
    GTEST_SKIP() << "wrote the event file into " << out;
  }
  const fs::path dir = fs::temp_directory_path() / ("tb_test_" + std::to_string(getpid()));
  fs::remove_all(dir);
  const fs::path file = write_fixture_events(dir);
  EXPECT_EQ(read_bytes(file), read_bytes(fixture / "events.out.tfevents.fixture"))
      << "the event file differs from the committed fixture";

  std::vector<tensorboard::Event> events = read_events(file);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  EXPECT_EQ(events[0].wall_time(), 1700000000.0);
  // tag -> [[step, value, wall_time]], as the Python reader saw it.
  std::map<std::string, std::vector<std::vector<double>>> got;
  for (size_t i = 1; i < events.size(); ++i) {
    ASSERT_TRUE(events[i].has_summary());
    for (const auto& v : events[i].summary().value())
      got[v.tag()].push_back({static_cast<double>(events[i].step()), v.simple_value(), events[i].wall_time()});
  }
  const nlohmann::json expected = nlohmann::json::parse(read_bytes(fixture / "expected.json"));
  ASSERT_EQ(got.size(), expected["scalars"].size());
  for (const auto& [tag, rows] : expected["scalars"].items()) {
    ASSERT_TRUE(got.count(tag)) << tag;
    ASSERT_EQ(got[tag].size(), rows.size()) << tag;
    for (size_t k = 0; k < rows.size(); ++k) {
      EXPECT_EQ(got[tag][k][0], rows[k][0].get<double>()) << tag;
      EXPECT_EQ(got[tag][k][1], rows[k][1].get<double>()) << tag;  // float32 both sides: exact
      EXPECT_EQ(got[tag][k][2], rows[k][2].get<double>()) << tag;
    }
  }
  // A second writer in the same folder gets its own file.
  TensorBoardWriter again(dir, 1700000000.0, "fixture");
  EXPECT_NE(again.path(), file);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace engine::train
