// engine/io/hf_config.cpp: reading config.json and the errors for missing or broken ones.
#include "engine/io/hf_config.hpp"

#include <gtest/gtest.h>

#include "engine/core/error.hpp"
#include "tests/unit/io/test_files.hpp"

namespace engine::io {
namespace {

using testing::io_data_dir;
using testing::TempDir;

std::string read_error(const std::filesystem::path& path) {
  try {
    (void)read_hf_config(path);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected engine::Error for " << path;
  return {};
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

TEST(HfConfig, ReadsFixture) {
  const auto dir = io_data_dir() / "sharded";
  const HfConfig config = read_hf_config(dir);
  EXPECT_EQ(config.model_type(), "qwen2");
  EXPECT_EQ(config.architecture(), "Qwen2ForCausalLM");
  EXPECT_EQ(config.text, testing::read_text(dir / "config.json"));
  EXPECT_EQ(config.json.at("hidden_size").get<int>(), 3);
  EXPECT_EQ(config.path, dir / "config.json");
  EXPECT_EQ(read_hf_config(dir / "config.json").model_type(), "qwen2");  // the file itself
}

TEST(HfConfig, ArchitectureIsOptional) {
  TempDir dir;
  testing::write_text(dir / "config.json", R"({"model_type": "llama"})");
  const HfConfig config = read_hf_config(dir.path());
  EXPECT_EQ(config.model_type(), "llama");
  EXPECT_EQ(config.architecture(), "");
}

TEST(HfConfig, MissingDirectoryOrFile) {
  TempDir dir;
  std::string msg = read_error(dir / "nope");
  EXPECT_HAS(msg, "does not exist");
  EXPECT_HAS(msg, "nope");
  msg = read_error(dir.path());
  EXPECT_HAS(msg, "has no config.json");
  EXPECT_HAS(msg, dir.path().string());
}

TEST(HfConfig, InvalidJsonReportsLineAndColumn) {
  TempDir dir;
  testing::write_text(dir / "config.json", "{\n  \"model_type\": \"qwen2\",\n  \"hidden_size\": ,\n}\n");
  const std::string msg = read_error(dir.path());
  EXPECT_HAS(msg, (dir / "config.json").string() + ":3:18:");
  EXPECT_HAS(msg, "invalid JSON");
}

TEST(HfConfig, MissingOrWrongModelType) {
  TempDir dir;
  testing::write_text(dir / "config.json", R"({"architectures": ["X"]})");
  EXPECT_HAS(read_error(dir.path()), "no \"model_type\"");
  testing::write_text(dir / "config.json", R"({"model_type": 2})");
  EXPECT_HAS(read_error(dir.path()), "\"model_type\" is a JSON number");
  testing::write_text(dir / "config.json", R"([1, 2])");
  EXPECT_HAS(read_error(dir.path()), "expected a JSON object");
}

}  // namespace
}  // namespace engine::io
