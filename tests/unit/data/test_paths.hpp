// Where the data tests find their inputs: ENGINE_TEST_DATA (tests/data) and ENGINE_SHARED_DIR (../shared),
// both set by engine_add_test.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace engine::data::testing {

inline std::filesystem::path test_data(const std::string& name) {
  const char* dir = std::getenv("ENGINE_TEST_DATA");
  return std::filesystem::path(dir != nullptr ? dir : "tests/data") / "data" / name;
}

inline std::filesystem::path shared_dir() {
  const char* dir = std::getenv("ENGINE_SHARED_DIR");
  return std::filesystem::path(dir != nullptr ? dir : "../shared");
}

inline std::filesystem::path qwen_tokenizer_dir() { return shared_dir() / "fixtures" / "qwen-tokenizer"; }

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace engine::data::testing
