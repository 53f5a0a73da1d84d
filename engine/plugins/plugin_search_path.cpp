#include "engine/plugins/plugin_search_path.hpp"

#include <boost/dll/runtime_symbol_info.hpp>
#include <cstdlib>
#include <string_view>

namespace engine::plugins {

std::filesystem::path installed_plugin_dir() {
  std::filesystem::path exe = boost::dll::program_location();
  return (exe.parent_path() / ".." / "lib" / "engine" / "plugins").lexically_normal();
}

std::vector<std::filesystem::path> plugin_search_path(const char* env_value,
                                                      const std::filesystem::path& exe_plugin_dir) {
  std::vector<std::filesystem::path> out;
  if (env_value != nullptr) {
    std::string_view rest(env_value);
    while (true) {
      size_t colon = rest.find(':');
      std::string_view entry = rest.substr(0, colon);
      if (!entry.empty()) out.emplace_back(std::string(entry));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  if (!exe_plugin_dir.empty()) out.push_back(exe_plugin_dir);
  return out;
}

std::vector<std::filesystem::path> default_plugin_search_path() {
  return plugin_search_path(std::getenv("ENGINE_PLUGIN_PATH"), installed_plugin_dir());
}

}  // namespace engine::plugins
