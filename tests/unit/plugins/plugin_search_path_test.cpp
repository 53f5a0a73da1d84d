#include "engine/plugins/plugin_search_path.hpp"

#include <gtest/gtest.h>

namespace engine::plugins {

TEST(PluginSearchPath, EnvironmentEntriesInOrderThenTheInstalledFolder) {
  auto p = plugin_search_path("/a::/b/c:", "/prefix/lib/engine/plugins");
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0], "/a");
  EXPECT_EQ(p[1], "/b/c");
  EXPECT_EQ(p[2], "/prefix/lib/engine/plugins");
}

TEST(PluginSearchPath, NeverTheCurrentDirectoryImplicitly) {
  auto p = plugin_search_path(nullptr, "/prefix/lib/engine/plugins");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0], "/prefix/lib/engine/plugins");
  for (const auto& e : default_plugin_search_path()) EXPECT_NE(e, std::filesystem::path("."));
}

TEST(PluginSearchPath, InstalledFolderIsRelativeToTheExecutable) {
  std::filesystem::path dir = installed_plugin_dir();
  EXPECT_EQ(dir.filename(), "plugins");
  EXPECT_EQ(dir.parent_path().filename(), "engine");
  EXPECT_EQ(dir.parent_path().parent_path().filename(), "lib");
}

}  // namespace engine::plugins
