// engine validate RECIPE [--set section.key=value]...
#include <iostream>

#include "engine/cli/command.hpp"
#include "engine/recipe/recipe_loader.hpp"
#include "engine/recipe/recipe_wiring.hpp"

namespace engine::cli {

int validate_command(const std::vector<std::string>& args) {
  RecipeArgs a = parse_recipe_args(args);
  if (!a.rest.empty()) throw UsageError("unknown option '" + a.rest[0] + "'");
  auto registry = discover_plugins();
  try {
    recipe::Recipe r = recipe::load_recipe(a.recipe, a.sets, *registry);
    std::cout << recipe::describe_wiring(r) << "recipe is valid\n";
    return kExitOk;
  } catch (const recipe::RecipeError& e) {
    for (const recipe::Diagnostic& d : e.diagnostics()) std::cerr << "error: " << d.str() << "\n";
    std::cerr << e.diagnostics().size() << " error" << (e.diagnostics().size() == 1 ? "" : "s") << " in "
              << a.recipe << "\n";
    return kExitUsage;
  }
}

}  // namespace engine::cli
