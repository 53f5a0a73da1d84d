// engine validate RECIPE [--set section.key=value]...
// Checks everything that can be checked without reading weights: the recipe (types, ranges, paths,
// combinations), each plugin's own options (by creating the optimizer, PEFT and quantizer instances), and the
// memory plan against the device (engine plan). Exit 0 and the wiring, or exit 2 and the errors.
#include <spdlog/spdlog.h>

#include <iostream>

#include "engine/cli/command.hpp"
#include "engine/core/error.hpp"
#include "engine/recipe/recipe_wiring.hpp"
#include "engine/runtime/device.hpp"
#include "engine/session/session.hpp"
#include "engine/train/memory_plan.hpp"

namespace engine::cli {

int validate_command(const std::vector<std::string>& args) {
  RecipeArgs a = parse_recipe_args(args);
  if (!a.rest.empty()) throw UsageError("unknown option '" + a.rest[0] + "'");
  auto registry = discover_plugins();
  std::optional<recipe::Recipe> r = load_recipe_or_report(a, *registry);
  if (!r) return kExitUsage;
  // A model named by Hub id and not downloaded yet has no config.json here: the plugins' options and the memory
  // plan are then checked by `run` (and `plan`) once it is.
  if (!std::filesystem::exists(r->model.path / "config.json") && r->model.init_preset.empty()) {
    spdlog::info("model.path {} has no config.json here yet; plugin options and memory are not checked",
                 r->model.path.string());
    std::cout << recipe::describe_wiring(*r) << "recipe is valid\n";
    return kExitOk;
  }
  try {
    // A recipe for a GPU is validated on a machine without one too: the plugins' options are then checked on
    // the CPU and the memory plan is left to `engine plan` on the GPU machine.
    rt::Device* device = nullptr;
    try {
      device = &session::device_for(r->train.device);
    } catch (const Error& e) {
      spdlog::info("train.device = \"{}\" is not usable here ({}); the memory plan is not checked", r->train.device,
                   e.what());
    }
    const train::MemoryPlan plan = plan_before_loading(*r, *registry, device != nullptr ? *device : rt::cpu_device());
    const std::string device_name =
        device != nullptr ? fmt::format("{}:{}", rt::device_type_name(device->type()), device->index()) : "";
    if (device != nullptr && !plan.fits()) {
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
