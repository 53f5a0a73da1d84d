// Every built plugin (the in-tree ones on ENGINE_PLUGIN_PATH and the test plugins) loads, and exports exactly
// one symbol, engine_plugin_negotiate, as `nm -D --defined-only` sees it (plus the few symbols the toolchain
// adds to every shared object).
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <sstream>

#include "engine/plugins/plugin_registry.hpp"
#include "engine/plugins/plugin_search_path.hpp"
#include "tests/unit/cli/process.hpp"
#include "tests/unit/plugins/test_plugin_dirs.hpp"

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> built_plugins() {
  std::vector<fs::path> dirs = engine::plugins::plugin_search_path(std::getenv("ENGINE_PLUGIN_PATH"), {});
  dirs.push_back(engine::testing::test_plugin_dir("good"));
  std::vector<fs::path> out;
  for (const fs::path& d : dirs) {
    std::error_code ec;
    for (const auto& f : fs::directory_iterator(d, ec)) {
      if (f.path().extension() == ".so") out.push_back(f.path());
    }
  }
  return out;
}

TEST(PluginExports, EveryPluginExportsOnlyTheEntrySymbol) {
  const std::set<std::string> toolchain = {"_init", "_fini", "_edata", "_end", "__bss_start"};
  std::vector<fs::path> plugins = built_plugins();
  ASSERT_GE(plugins.size(), 9u) << "the test plugins were not built";
  for (const fs::path& p : plugins) {
    auto r = engine::testing::run_process("nm -D --defined-only '" + p.string() + "'");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::istringstream lines(r.output);
    std::string line;
    int entries = 0;
    while (std::getline(lines, line)) {
      std::string symbol = line.substr(line.find_last_of(' ') + 1);
      if (symbol == "engine_plugin_negotiate") {
        ++entries;
        EXPECT_NE(line.find(" T "), std::string::npos) << line;
      } else {
        EXPECT_TRUE(toolchain.count(symbol)) << p << " exports " << symbol;
      }
    }
    EXPECT_EQ(entries, 1) << p;
  }
}

TEST(PluginExports, EveryPluginLoadsAndNegotiates) {
  engine::plugins::PluginRegistry registry;
  for (const fs::path& p : built_plugins()) {
    EXPECT_NE(registry.load_file(p), nullptr)
        << p << ": " << (registry.problems().empty() ? "" : registry.problems().back().message);
  }
}

}  // namespace
