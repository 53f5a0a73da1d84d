// load_recipe: reads a TOML recipe (following `include`), applies --set overrides, resolves each plugin slot
// in the registry, checks every key against the engine's sections and each plugin's schema, checks that the
// chosen plugins can work together (capability flags), and returns the typed Recipe. Throws RecipeError with
// every problem found, each with file:line:column and a fix.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "engine/plugins/plugin_registry.hpp"
#include "engine/recipe/diagnostics.hpp"
#include "engine/recipe/recipe.hpp"

namespace engine::recipe {

// sets: "section.key=value" strings as given to --set, applied in order after the file (and its includes).
// data_must_exist = false leaves out the check that data.train/data.eval files exist (engine plan reads no data).
Recipe load_recipe(const std::filesystem::path& path, const std::vector<std::string>& sets,
                   const plugins::PluginRegistry& registry, bool data_must_exist = true);

}  // namespace engine::recipe
