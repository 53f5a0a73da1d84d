// Where plugins are looked for: every entry of ENGINE_PLUGIN_PATH (colon-separated) in order, then the
// installed plugin folder next to the executable (<exe dir>/../lib/engine/plugins; the build tree mirrors
// this layout). Never the current directory unless the user names it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace engine::plugins {

// The folder installed plugins live in, relative to the running executable.
std::filesystem::path installed_plugin_dir();

// ENGINE_PLUGIN_PATH's entries (empty entries skipped), then installed_plugin_dir(). `env_value` is the
// variable's value (nullptr when unset); exe_plugin_dir the installed folder.
std::vector<std::filesystem::path> plugin_search_path(const char* env_value,
                                                      const std::filesystem::path& exe_plugin_dir);

// plugin_search_path(getenv("ENGINE_PLUGIN_PATH"), installed_plugin_dir()).
std::vector<std::filesystem::path> default_plugin_search_path();

}  // namespace engine::plugins
