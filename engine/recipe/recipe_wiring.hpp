// How a validated recipe reads back: the wiring `engine validate` prints, and the recipe as run (TOML) that
// checkpoints keep.
#pragma once

#include <string>

#include "engine/recipe/recipe.hpp"

namespace engine::recipe {

// One line per slot (plugin, version, file, options) followed by every resolved section.
std::string describe_wiring(const Recipe& r);

// Every resolved section as TOML (defaults filled, paths absolute), which load_recipe reads back to the same
// Recipe.
std::string to_toml(const Recipe& r);

}  // namespace engine::recipe
