#include <cstdlib>
#include <cstring>

#include "engine/cli/command.hpp"
#include "engine/plugins/plugin_search_path.hpp"

namespace engine::cli {

std::unique_ptr<plugins::PluginRegistry> discover_plugins() {
  auto registry = std::make_unique<plugins::PluginRegistry>();
  // Set by --allow-insecure-plugins (main.cpp), inherited by the worker processes of a multi-process run.
  const char* insecure = std::getenv(kAllowInsecurePluginsEnv);
  registry->set_allow_insecure(insecure != nullptr && std::strcmp(insecure, "1") == 0);
  registry->load_search_path(plugins::default_plugin_search_path());
  return registry;
}

}  // namespace engine::cli
