// The `engine` subcommands. Each lives in its own <name>_command.cpp and is listed once in command_table.cpp;
// to add one, write the file, declare its function here and add a line to the table.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/plugins/plugin_registry.hpp"
#include "engine/recipe/recipe.hpp"

namespace engine::train {
struct MemoryPlan;
}  // namespace engine::train
namespace engine::rt {
class Device;
}  // namespace engine::rt

namespace engine::cli {

// Exit codes of every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;   // something failed while doing valid work
inline constexpr int kExitUsage = 2;     // bad arguments or an invalid recipe
inline constexpr int kExitNotBuilt = 3;  // the requested feature is not part of this build

struct Command {
  const char* name;
  const char* usage;                                 // "validate RECIPE [--set section.key=value]..."
  const char* summary;                               // one line for `engine --help`
  int (*run)(const std::vector<std::string>& args);  // args after the subcommand's name
};

const std::vector<Command>& commands();

// Thrown for bad command-line arguments; main prints it with the command's usage and exits kExitUsage.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The environment variable that --allow-insecure-plugins sets (to "1") and discover_plugins() reads.
inline constexpr const char* kAllowInsecurePluginsEnv = "ENGINE_ALLOW_INSECURE_PLUGINS";

// Loads every plugin on the search path (ENGINE_PLUGIN_PATH, then the installed folder); refused files are
// logged as warnings and kept in registry.problems().
std::unique_ptr<plugins::PluginRegistry> discover_plugins();

// Splits `RECIPE [--set a.b=c | --set=a.b=c]...` into the recipe path and the overrides.
struct RecipeArgs {
  std::string recipe;
  std::vector<std::string> sets;
  std::vector<std::string> rest;  // other arguments, for the command to interpret
};
RecipeArgs parse_recipe_args(const std::vector<std::string>& args);

// Loads and validates a.recipe with a.sets; on errors prints every diagnostic and their count to stderr and
// returns nothing (the caller exits kExitUsage).
std::optional<recipe::Recipe> load_recipe_or_report(const RecipeArgs& a, const plugins::PluginRegistry& registry,
                                                    bool data_must_exist = true);

int plugins_command(const std::vector<std::string>& args);
int validate_command(const std::vector<std::string>& args);
int run_command(const std::vector<std::string>& args);
// Creates the preset model of a recipe at model.path when model.init_preset is set and it has none yet.
void ensure_preset_model(const recipe::Recipe& recipe);
int plan_command(const std::vector<std::string>& args);
// The memory plan of a recipe on `device` from config.json (or the preset's config) alone, after creating its
// optimizer, PEFT and quantizer instances there (which check their options); engine::Error for what would
// stop `run` early.
// world_size: the plan is per rank of that many for the recipe's strategy (ddp when none and world_size > 1).
// cuda_memory > 0: plan for a CUDA GPU of that many bytes instead of `device` (engine plan --device-memory;
// the instances are still created on `device`, which may be the CPU).
train::MemoryPlan plan_before_loading(const recipe::Recipe& recipe, const plugins::PluginRegistry& registry,
                                      rt::Device& device, int64_t world_size = 1, int64_t cuda_memory = 0);
int export_command(const std::vector<std::string>& args);
int plot_command(const std::vector<std::string>& args);
int init_model_command(const std::vector<std::string>& args);
int generate_command(const std::vector<std::string>& args);
int tokenize_command(const std::vector<std::string>& args);
int download_command(const std::vector<std::string>& args);

}  // namespace engine::cli
