// Where the test plugins of tests/plugins are built: $ENGINE_BINARY_DIR/tests/plugins/{good,bad/<case>}.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace engine::testing {

inline std::filesystem::path test_plugin_dir(const std::string& sub) {
  const char* bin = std::getenv("ENGINE_BINARY_DIR");
  return std::filesystem::path(bin != nullptr ? bin : "build") / "tests" / "plugins" / sub;
}

inline std::filesystem::path test_data_dir(const std::string& sub) {
  const char* data = std::getenv("ENGINE_TEST_DATA");
  return std::filesystem::path(data != nullptr ? data : "tests/data") / sub;
}

}  // namespace engine::testing
