// engine validate RECIPE [--set section.key=value]...
// Checks everything that can be checked without reading weights: the recipe (types, ranges, paths,
// combinations), each plugin's own options (by creating the optimizer, PEFT and quantizer instances), and the
// memory plan against the device (engine plan). Exit 0 and the wiring, or exit 2 and the errors.
#include <iostream>

#include "engine/cli/command.hpp"
#include "engine/core/error.hpp"
#include "engine/recipe/recipe_wiring.hpp"
#include "engine/train/memory_plan.hpp"

namespace engine::cli {

int validate_command(const std::vector<std::string>& args) {
  RecipeArgs a = parse_recipe_args(args);
  if (!a.rest.empty()) throw UsageError("unknown option '" + a.rest[0] + "'");
  auto registry = discover_plugins();
  std::optional<recipe::Recipe> r = load_recipe_or_report(a, *registry);
  if (!r) return kExitUsage;
  try {
    std::string device_name;
    const train::MemoryPlan plan = plan_before_loading(*r, *registry, &device_name);
    if (!plan.fits()) {
      std::cerr << train::format_memory_plan(plan, device_name) << "error: " << r->source.string()
                << ": the run does not fit in the memory of " << device_name
                << " (see the plan above); lower train.micro_batch_size or data.max_seq_len, set "
                   "train.activation_checkpointing = true, or use a quantizer\n";
      return kExitUsage;
    }
  } catch (const Error& e) {
    std::cerr << "error: " << r->source.string() << ": " << e.what() << "\n";
    return kExitUsage;
  }
  std::cout << recipe::describe_wiring(*r) << "recipe is valid\n";
  return kExitOk;
}

}  // namespace engine::cli
