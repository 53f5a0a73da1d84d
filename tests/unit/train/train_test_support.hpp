// Shared by the engine/train unit tests: the plugin registry of the build tree and recipes from
// tests/data/train/recipes with --set overrides.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "engine/host/host_api.hpp"
#include "engine/plugins/plugin_registry.hpp"
#include "engine/plugins/plugin_search_path.hpp"
#include "engine/recipe/recipe_loader.hpp"

namespace engine::train::testing {

inline std::string test_data(const std::string& rel) {
  return std::string(std::getenv("ENGINE_TEST_DATA")) + "/" + rel;
}

inline std::unique_ptr<plugins::PluginRegistry> registry() {
  auto r = std::make_unique<plugins::PluginRegistry>(host::host_api());
  r->load_search_path(plugins::default_plugin_search_path());
  return r;
}

inline recipe::Recipe load_path(const plugins::PluginRegistry& reg, const std::string& path,
                                const std::vector<std::string>& sets = {}) {
  try {
    return recipe::load_recipe(path, sets, reg);
  } catch (const recipe::RecipeError& e) {
    std::string all;
    for (const auto& d : e.diagnostics()) all += d.str() + "\n";
    ADD_FAILURE() << all;
    throw;
  }
}

inline recipe::Recipe load(const plugins::PluginRegistry& reg, const std::string& recipe_rel,
                           const std::vector<std::string>& sets = {}) {
  return load_path(reg, test_data(recipe_rel), sets);
}

inline std::string source_file(const std::string& rel) {
  return std::string(std::getenv("ENGINE_SOURCE_DIR")) + "/" + rel;
}

}  // namespace engine::train::testing
