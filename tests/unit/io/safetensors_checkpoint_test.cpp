// engine/io/safetensors_checkpoint.cpp: single-file and sharded model directories, and the errors for
// incomplete or inconsistent ones.
#include "engine/io/safetensors_checkpoint.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "tests/unit/io/test_files.hpp"

namespace engine::io {
namespace {

using testing::io_data_dir;
using testing::TempDir;
namespace fs = std::filesystem;

const fs::path kSharded = io_data_dir() / "sharded";
constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
constexpr const char* kShard2 = "model-00002-of-00002.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";

std::string open_error(const fs::path& path) {
  try {
    (void)SafetensorsCheckpoint::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected engine::Error opening " << path;
  return {};
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

// A copy of the sharded fixture whose index is `edit`ed.
void copy_sharded(const TempDir& dir, const std::function<void(nlohmann::json&)>& edit) {
  fs::copy_file(kSharded / kShard1, dir / kShard1);
  fs::copy_file(kSharded / kShard2, dir / kShard2);
  nlohmann::json index = nlohmann::json::parse(testing::read_text(kSharded / kIndex));
  edit(index);
  testing::write_text(dir / kIndex, index.dump(2));
}

TEST(SafetensorsCheckpoint, OpensShardedDirectoryWithIndex) {
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(kSharded);
  EXPECT_EQ(ckpt.names(),
            (std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight",
                                      "model.layers.0.input_layernorm.weight",
                                      "model.layers.0.mlp.up_proj.weight", "model.norm.weight"}));
  ASSERT_TRUE(ckpt.index_path().has_value());
  EXPECT_EQ(ckpt.shards().size(), 2u);
  EXPECT_TRUE(ckpt.unindexed_tensors().empty());
  EXPECT_EQ(fs::path(ckpt.shard_of("lm_head.weight").path()).filename(), kShard2);
  EXPECT_EQ(fs::path(ckpt.shard_of("model.embed_tokens.weight").path()).filename(), kShard1);

  // Values from both shards: embed = arange(12) (4, 3) f32; up_proj = arange(6) - 2 (2, 3) bf16.
  const SafetensorsTensor embed = ckpt.tensor("model.embed_tokens.weight");
  std::vector<float> e(12);
  std::memcpy(e.data(), embed.data, embed.nbytes);
  for (size_t i = 0; i < e.size(); ++i) EXPECT_EQ(e[i], static_cast<float>(i));
  const SafetensorsTensor up = ckpt.tensor("model.layers.0.mlp.up_proj.weight");
  ASSERT_EQ(up.dtype, SafetensorsDtype::BF16);
  for (size_t i = 0; i < 6; ++i) {
    uint16_t bits;
    std::memcpy(&bits, up.data + 2 * i, 2);
    EXPECT_EQ(bf16_bits_to_f32(bits), static_cast<float>(i) - 2.0f);
  }
  EXPECT_FALSE(ckpt.find("model.layers.1.mlp.up_proj.weight").has_value());
}

TEST(SafetensorsCheckpoint, MissingTensorSuggestsClosestName) {
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(kSharded);
  try {
    (void)ckpt.tensor("model.norm.weigth");
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), ENG_ERR_NOT_FOUND);
    const std::string msg = e.what();
    EXPECT_HAS(msg, "no tensor named 'model.norm.weigth'");
    EXPECT_HAS(msg, "closest: model.norm.weight");
  }
}

TEST(SafetensorsCheckpoint, SingleFileLayouts) {
  TempDir dir;
  fs::copy_file(io_data_dir() / "mixed_dtypes.safetensors", dir / "model.safetensors");
  // A second file with another name is ignored when model.safetensors exists.
  fs::copy_file(io_data_dir() / "pad" / "pad_1.safetensors", dir / "other.safetensors");
  SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir.path());
  EXPECT_EQ(ckpt.names().size(), 18u);
  EXPECT_FALSE(ckpt.index_path().has_value());

  TempDir one;
  fs::copy_file(io_data_dir() / "pad" / "pad_3.safetensors", one / "weights.safetensors");
  ckpt = SafetensorsCheckpoint::open(one.path());
  EXPECT_EQ(ckpt.names(), std::vector<std::string>{"xxx"});

  ckpt = SafetensorsCheckpoint::open(io_data_dir() / "pad" / "pad_2.safetensors");  // a file path
  EXPECT_EQ(ckpt.names(), std::vector<std::string>{"xx"});
}

TEST(SafetensorsCheckpoint, IndexNamesMissingShard) {
  TempDir dir;
  copy_sharded(dir, [](nlohmann::json&) {});
  fs::remove(dir / kShard2);
  const std::string msg = open_error(dir.path());
  EXPECT_HAS(msg, kIndex);
  EXPECT_HAS(msg, std::string("shard \"") + kShard2 + "\"");
  EXPECT_HAS(msg, "does not exist");
  EXPECT_HAS(msg, "lm_head.weight");  // a tensor that lives there
}

TEST(SafetensorsCheckpoint, IndexNamesTensorTheShardLacks) {
  TempDir dir;
  copy_sharded(dir, [](nlohmann::json& index) { index["weight_map"]["model.extra.weight"] = kShard1; });
  const std::string msg = open_error(dir.path());
  EXPECT_HAS(msg, "tensor 'model.extra.weight' is mapped to shard \"" + std::string(kShard1) + "\"");
  EXPECT_HAS(msg, "has no such tensor");
}

TEST(SafetensorsCheckpoint, TensorsAbsentFromIndexAreReported) {
  TempDir dir;
  copy_sharded(dir, [](nlohmann::json& index) { index["weight_map"].erase("model.norm.weight"); });
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir.path());
  EXPECT_EQ(ckpt.unindexed_tensors(), std::vector<std::string>{std::string(kShard2) + ": model.norm.weight"});
  EXPECT_FALSE(ckpt.find("model.norm.weight").has_value());
  EXPECT_EQ(ckpt.names().size(), 4u);
}

TEST(SafetensorsCheckpoint, MalformedIndex) {
  TempDir dir;
  copy_sharded(
      dir, [](nlohmann::json& index) { index["weight_map"]["lm_head.weight"] = "../elsewhere.safetensors"; });
  EXPECT_HAS(open_error(dir.path()), "inside the model directory");
  testing::write_text(dir / kIndex, "{\"weight_map\": ");
  EXPECT_HAS(open_error(dir.path()), "not valid JSON");
  testing::write_text(dir / kIndex, "{\"metadata\": {}}");
  EXPECT_HAS(open_error(dir.path()), "\"weight_map\"");
  testing::write_text(dir / kIndex, "{\"weight_map\": {\"a\": 3}}");
  EXPECT_HAS(open_error(dir.path()), "entry 'a' is a JSON number");
}

TEST(SafetensorsCheckpoint, DirectoriesWithoutUsableWeights) {
  TempDir dir;
  EXPECT_HAS(open_error(dir / "absent"), "does not exist");
  EXPECT_HAS(open_error(dir.path()), "no model.safetensors, no model.safetensors.index.json");
  fs::copy_file(io_data_dir() / "pad" / "pad_1.safetensors", dir / "a.safetensors");
  fs::copy_file(io_data_dir() / "pad" / "pad_2.safetensors", dir / "b.safetensors");
  const std::string msg = open_error(dir.path());
  EXPECT_HAS(msg, "2 *.safetensors files (a.safetensors, b.safetensors)");
  testing::write_text(dir / "config.json", "{}");
  EXPECT_HAS(open_error(dir / "config.json"), "not a .safetensors file");
  // A corrupt shard is reported with the shard's own path.
  TempDir bad;
  testing::write_text(bad / "model.safetensors", "garbage");
  EXPECT_HAS(open_error(bad.path()), (bad / "model.safetensors").string());
}

}  // namespace
}  // namespace engine::io
