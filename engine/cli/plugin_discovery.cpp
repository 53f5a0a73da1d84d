#include "engine/cli/command.hpp"
#include "engine/plugins/plugin_search_path.hpp"

namespace engine::cli {

std::unique_ptr<plugins::PluginRegistry> discover_plugins() {
  auto registry = std::make_unique<plugins::PluginRegistry>();
  registry->load_search_path(plugins::default_plugin_search_path());
  return registry;
}

}  // namespace engine::cli
