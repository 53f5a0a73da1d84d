// Warnings about a plugin that loads but is not built as the SDK says (docs/PLUGINS.md): it exports more than
// its entry symbol, or its options schema is not a JSON object. The registry logs each once when it loads the
// file and keeps them on the record, so that `engine plugins` lists them next to the plugin.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace engine::plugins {

std::vector<std::string> plugin_warnings(const std::filesystem::path& path, const std::string& options_schema_json);

}  // namespace engine::plugins
