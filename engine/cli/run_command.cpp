// engine run [RECIPE] [--set section.key=value]... [--resume auto|none|DIR] [--offline]
// Without RECIPE: the embedded default, recipes/tiny_lora.toml (default_recipe.hpp).
// Validates the recipe exactly as `engine validate` does, then trains (engine/train/trainer.hpp):
//   - Hub ids in model.path / data.train / data.eval: fetched into the Hugging Face cache when missing
//     (hub_sources.hpp), unless --offline or HF_HUB_OFFLINE=1, which use the cache only
//   - model.init_preset set and model.path absent: the preset model is created there first (init-model)
//   - --resume auto (default): continue from the newest complete checkpoint in train.output_dir, if any;
//     none: start over; DIR: continue from that checkpoint
//   - SIGINT/SIGTERM: the current step finishes, a checkpoint is saved, exit 0 (a second signal kills)
//   - --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P --max-restarts K]: this
//     process becomes the launcher of N workers (launcher.hpp); a process started with RANK/WORLD_SIZE
//     (our launcher, torchrun) or SLURM_PROCID/SLURM_NTASKS (srun) is one rank of a distributed run
//     (engine/dist/dist_env.hpp) and joins the others before loading the model
// Exit codes: 0 done (or interrupted and saved), 1 a runtime failure or a stop on non-finite steps, 2 usage.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "engine/cli/command.hpp"
#include "engine/cli/default_recipe.hpp"
#include "engine/cli/hub_sources.hpp"
#include "engine/cli/launcher.hpp"
#include "engine/dist/process_group.hpp"
#include "engine/hub/hub_download.hpp"
#include "engine/cli/preset_tokenizers.hpp"
#include "engine/host/host_session.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/plugins/spelling.hpp"
#include "engine/recipe/recipe_loader.hpp"
#include "engine/recipe/recipe_wiring.hpp"
#include "engine/runtime/device_select.hpp"
#include "engine/session/model_writer.hpp"
#include "engine/session/session.hpp"
#include "engine/train/data_pipeline.hpp"
#include "engine/train/progress.hpp"
#include "engine/train/trainer.hpp"

namespace engine::cli {

namespace {

namespace fs = std::filesystem;

// Set by the signal handler (the one piece of process-wide state a handler can touch safely).
std::atomic<bool> g_stop_requested{false};

extern "C" void on_stop_signal(int sig) {
  g_stop_requested.store(true);
  std::signal(sig, SIG_DFL);  // a second signal ends the process at once
}

// Takes `--resume X` / `--resume=X` out of args.
std::string take_resume(std::vector<std::string>& args) {
  std::string resume = "auto";
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--resume") {
      if (i + 1 >= args.size()) throw UsageError("--resume needs auto, none or a checkpoint directory");
      resume = args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
                 args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      --i;
    } else if (args[i].rfind("--resume=", 0) == 0) {
      resume = args[i].substr(9);
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
      --i;
    }
  }
  return resume;
}

}  // namespace

// Creates the preset model of a recipe at model.path when it has none yet (used by run and plan), as
// `engine init-model` does, with model.init_std as its initializer_range when set.
void ensure_preset_model(const recipe::Recipe& r) {
  if (r.model.init_preset.empty() || fs::exists(r.model.path / "config.json")) return;
  // A model is created only where nothing of the user's can be overwritten: the folder is new or empty. The
  // model is written into a staging folder beside it and renamed at the end (as init-model does), so a folder
  // without config.json that holds files is never one the engine created (a killed creation leaves only the
  // staging folder) and is refused.
  std::error_code ec;
  const bool existed = fs::exists(fs::symlink_status(r.model.path, ec));
  if (existed && !(fs::is_directory(r.model.path, ec) && fs::is_empty(r.model.path, ec))) {
    std::vector<std::string> held;
    if (fs::is_directory(r.model.path, ec)) {
      for (const auto& e : fs::directory_iterator(r.model.path, ec)) {
        if (held.size() == 4) {
          held.push_back("...");
          break;
        }
        held.push_back(e.path().filename().string());
      }
    }
    fail(
        "model.init_preset = \"{}\" would create a model at model.path {}, but it already {} and has no "
        "config.json; the engine never writes over a user's files. Point model.path at a new or empty folder, "
        "or add the model's config.json (and remove model.init_preset) to train the model that is there",
        r.model.init_preset, r.model.path.string(),
        held.empty() ? std::string("exists as a file") : "holds " + plugins::join(held));
  }
  if (r.model.plugin.empty())
    fail("model.init_preset needs model.plugin (qwen2 or llama) to know what to create");
  auto registry = discover_plugins();
  const plugins::PluginRecord& plugin = registry->require(ENG_KIND_MODEL, r.model.plugin);
  const eng_model_vtable* vt = plugin.table<eng_model_vtable>();
  const char* text = vt->preset_config != nullptr ? vt->preset_config(r.model.init_preset.c_str()) : nullptr;
  if (text == nullptr) fail("model plugin '{}' has no preset '{}'", r.model.plugin, r.model.init_preset);
  std::optional<PresetTokenizerFiles> tokenizer = preset_tokenizer_files(r.model.plugin);
  if (!tokenizer) fail("there is no preset tokenizer for architecture '{}'", r.model.plugin);
  nlohmann::json config = nlohmann::json::parse(text);
  if (r.model.init_std > 0) config["initializer_range"] = r.model.init_std;
  const std::string config_text = config.dump(2) + "\n";
  io::AtomicDirectory staging(r.model.path);
  host::HostSession hs(rt::cpu_device(), static_cast<uint64_t>(r.train.seed));
  {
    session::ModelInstance model(hs, plugin, config_text, R"({"dtype": "float32"})");
    session::write_model_safetensors(hs.params(), staging.path() / "model.safetensors", ENG_F32);
  }
  io::write_file_atomic(staging.path() / "tokenizer.json", tokenizer->tokenizer_json);
  io::write_file_atomic(staging.path() / "tokenizer_config.json", tokenizer->tokenizer_config_json);
  io::write_file_atomic(staging.path() / "config.json", config_text);
  // The empty folder is replaced by the model: rmdir(2) fails if anything appeared in it meanwhile.
  if (existed && !fs::remove(r.model.path, ec) && ec) {
    fail("model.path {} is no longer an empty folder ({}); nothing was written there", r.model.path.string(),
         ec.message());
  }
  staging.commit();
  spdlog::info("created the '{}' {} model ({} parameters, initializer_range {}) in {}", r.model.init_preset,
               r.model.plugin, hs.params().numel(), config.value("initializer_range", 0.02),
               r.model.path.string());
}

int run_command(const std::vector<std::string>& in_args) {
  std::vector<std::string> args = in_args;
  const LaunchOptions launch = take_launch_options(args);
  if (launch.nproc_per_node > 0) {
    if (std::getenv("RANK") != nullptr)
      throw UsageError("--nproc-per-node inside a worker (RANK is set): run the launcher once, outside torchrun");
    // Validate once here, so that a bad recipe is one message instead of N.
    std::vector<std::string> check = args;
    (void)take_resume(check);
    std::erase(check, std::string("--offline"));
    RecipeArgs ca = parse_recipe_args(check);
    if (!ca.rest.empty() && ca.rest[0].rfind("--", 0) == 0) throw UsageError("unknown option '" + ca.rest[0] + "'");
    return launch_workers(launch, args);
  }
  const std::string resume = take_resume(args);
  const auto fresh_optimizer = std::find(args.begin(), args.end(), "--allow-missing-optimizer-state");
  const bool allow_missing_optimizer_state = fresh_optimizer != args.end();
  if (allow_missing_optimizer_state) args.erase(fresh_optimizer);
  HubSourceOptions hub_options;
  hub_options.offline = hub::hub_offline_from_env();
  if (auto it = std::find(args.begin(), args.end(), "--offline"); it != args.end()) {
    hub_options.offline = true;
    args.erase(it);
  }
  // Checked here too, so that a mistyped value fails at once (exit 2) instead of after loading the model.
  if (!resume.empty() && resume != "auto" && resume != "none" && !fs::is_directory(resume))
    throw UsageError("--resume " + resume +
                     ": no such directory (use auto, none, or a checkpoint directory)");
  bool has_recipe = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--set") {
      ++i;
    } else if (!args[i].empty() && args[i][0] != '-') {
      has_recipe = true;
    }
  }
  if (!has_recipe) {
    const fs::path recipe = default_recipe_path();
    std::cerr << "engine run: no recipe given, running the default " << recipe.string() << "\n";
    args.insert(args.begin(), recipe.string());
  }
  RecipeArgs a = parse_recipe_args(args);
  if (!a.rest.empty()) throw UsageError("unknown option '" + a.rest[0] + "'");
  auto registry = discover_plugins();
  std::optional<recipe::Recipe> loaded = load_recipe_or_report(a, *registry);
  if (!loaded) return kExitUsage;
  recipe::Recipe& r = *loaded;
  spdlog::info("recipe {} is valid", r.source.string());
  spdlog::debug("wiring:\n{}", recipe::describe_wiring(r));
  resolve_hub_sources(r, hub_options);  // every rank (the Hub cache locks each blob it downloads)
  const dist::DistEnv env = dist::read_dist_env();
  if (env.rank == 0) ensure_preset_model(r);

  g_stop_requested.store(false);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);

  // One GPU per local rank: "cuda" means cuda:LOCAL_RANK in a job with several local ranks.
  std::string device_spec = r.train.device;
  if (env.local_world_size > 1 && (device_spec == "cuda" || (device_spec == "auto" && rt::usable_cuda_devices() > 0)))
    device_spec = "cuda:" + std::to_string(env.local_rank);
  rt::Device& device = session::device_for(device_spec);
  std::unique_ptr<dist::ProcessGroup> group;
  if (env.launched()) {
    dist::ProcessGroupOptions po;
    po.timeout = std::chrono::milliseconds(static_cast<int64_t>(r.parallel.timeout_s * 1000.0));
    group = std::make_unique<dist::ProcessGroup>(env, device, po);
    // Rank 0 may have just created the preset model: the others wait for it before reading model.path.
    group->barrier();
  }
  session::TrainingSession session(r, *registry, device, group.get(), env.local_rank);
  // Ranks of one data-parallel group (tensor parallelism) read the same rows.
  train::DataPipeline data(r, session.dp_rank(), session.dp_size());
  train::TrainOptions options;
  options.resume = resume;
  options.allow_missing_optimizer_state = allow_missing_optimizer_state;
  options.live_progress = train::stderr_is_terminal();
  options.stop_requested = &g_stop_requested;
  train::TrainResult result = train::train(session, data, options);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (env.rank == 0) std::cout << train::format_summary(session, result) << std::flush;
  return result.stopped_nonfinite ? kExitRuntime : kExitOk;
}

}  // namespace engine::cli
