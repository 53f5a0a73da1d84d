// engine validate RECIPE [--set section.key=value]...
#include <iostream>

#include "engine/cli/command.hpp"
#include "engine/recipe/recipe_wiring.hpp"

namespace engine::cli {

int validate_command(const std::vector<std::string>& args) {
  RecipeArgs a = parse_recipe_args(args);
  if (!a.rest.empty()) throw UsageError("unknown option '" + a.rest[0] + "'");
  auto registry = discover_plugins();
  std::optional<recipe::Recipe> r = load_recipe_or_report(a, *registry);
  if (!r) return kExitUsage;
  std::cout << recipe::describe_wiring(*r) << "recipe is valid\n";
  return kExitOk;
}

}  // namespace engine::cli
