// engine plan RECIPE [--set section.key=value]... [--nproc-per-node N] [--device-memory GIB]
// With --nproc-per-node (default 1) the plan is per rank for the recipe's [parallel] strategy (ddp when it has
// none and N > 1). With --device-memory the plan is for a CUDA GPU of that many GiB that need not be on this
// machine (bf16 compute, as a run there would be); without it, for the recipe's train.device here.
// Prints, before any weight is loaded, the memory the run will need on its device, component by component
// (engine/train/memory_plan.hpp), against the device's memory. Reads only config.json (or the preset's config
// when model.init_preset will create the model) and asks the optimizer and quantizer plugins their bytes per
// element.
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>

#include "engine/abi/optimizer.h"
#include "engine/cli/command.hpp"
#include "engine/cli/hub_sources.hpp"
#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"
#include "engine/host/plugin_peft.hpp"
#include "engine/host/plugin_quantizer.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/runtime/layer_devices.hpp"
#include "engine/recipe/recipe_loader.hpp"
#include "engine/session/optimizer_instance.hpp"
#include "engine/session/session.hpp"
#include "engine/train/plan_inputs.hpp"

namespace engine::cli {

train::MemoryPlan plan_before_loading(const recipe::Recipe& r, const plugins::PluginRegistry& registry,
                                      rt::Device& device, int64_t world_size, int64_t cuda_memory) {
  nlohmann::json config;
  if (std::filesystem::exists(r.model.path / "config.json")) {
    config = io::read_hf_config(r.model.path).json;
  } else {
    const auto* vt = registry.require(ENG_KIND_MODEL, r.model.plugin).table<eng_model_vtable>();
    const char* text =
        vt->preset_config != nullptr ? vt->preset_config(r.model.init_preset.c_str()) : nullptr;
    if (text == nullptr) fail("no config.json in {} and no preset to plan from", r.model.path.string());
    config = nlohmann::json::parse(text);
  }
  host::HostSession hs(device, 0);
  // Creating the plugin instances runs their own option checks (a LoRA target_modules regex, ranges the
  // schema cannot say): what `run` would refuse at its start, refused here before any weight is read.
  session::OptimizerInstance opt(hs, registry.require(ENG_KIND_OPTIMIZER, r.optimizer.plugin),
                                 r.optimizer.options_json);
  if (r.peft.present()) {
    const plugins::PluginRecord& p = registry.require(ENG_KIND_PEFT, r.peft.plugin);
    host::PluginPeft peft(hs, host::host_api(), p.table<eng_peft_vtable>(), p.name, r.peft.options_json);
  }
  double quant_bytes = 0.0;
  if (r.quantizer.present()) {
    const plugins::PluginRecord& q = registry.require(ENG_KIND_QUANTIZER, r.quantizer.plugin);
    host::PluginQuantizer quant(hs, host::host_api(), q.table<eng_quantizer_vtable>(), q.name,
                                r.quantizer.options_json);
    if (quant.vtable().bytes_per_element != nullptr)
      quant_bytes = quant.vtable().bytes_per_element(quant.self());
  }
  const bool cuda = cuda_memory > 0 || device.type() == rt::DeviceType::CUDA;
  train::PlanInputs in = train::plan_inputs_for(r, config, opt.state_bytes_per_element(), quant_bytes, cuda,
                                                cuda_memory > 0 ? cuda_memory : static_cast<int64_t>(device.total_memory()));
  in.world_size = world_size;
  in.strategy = r.parallel.present() ? r.parallel.plugin : world_size > 1 ? "ddp" : "";
  const nlohmann::json o = nlohmann::json::parse(r.parallel.options_json, nullptr, false);
  if (in.strategy == "tp" && o.is_object() && o.contains("tp_size") && o["tp_size"].is_number_integer())
    in.tp_size = o["tp_size"].get<int64_t>();
  if (in.strategy == "pp") {
    if (o.is_object() && o.contains("pp_size") && o["pp_size"].is_number_integer())
      in.pp_size = o["pp_size"].get<int64_t>();
    in.pp_gpipe = o.is_object() && o.contains("schedule") && o["schedule"] == "gpipe";
    if (o.is_object() && o.contains("stages") && o["stages"].is_array())
      for (const auto& v : o["stages"])
        if (v.is_number_integer()) in.pp_stage_blocks = std::max<int64_t>(in.pp_stage_blocks, v.get<int64_t>());
  }
  if (in.strategy == "layers") {  // the busiest device of one process's (the devices given, else every one)
    if (o.is_object() && o.contains("devices") && o["devices"].is_number_integer())
      in.pp_size = o["devices"].get<int64_t>();
    if (o.is_object() && o.contains("blocks") && o["blocks"].is_array()) {
      in.pp_size = static_cast<int64_t>(o["blocks"].size());
      for (const auto& v : o["blocks"])
        if (v.is_number_integer()) in.pp_stage_blocks = std::max<int64_t>(in.pp_stage_blocks, v.get<int64_t>());
    }
    if (in.pp_size == 0) in.pp_size = std::max(1, rt::layer_devices_available(device));
  }
  return train::make_memory_plan(in);
}

namespace {

// The value of plan's own option `flag` at args[i] ("--flag V" or "--flag=V"), advancing i past it; nullopt when
// args[i] is not that option.
std::optional<std::string> option_value(const std::vector<std::string>& args, size_t& i, const std::string& flag,
                                        const char* needs) {
  if (args[i] == flag) {
    if (i + 1 >= args.size()) throw UsageError(flag + " needs " + needs);
    return args[++i];
  }
  if (args[i].rfind(flag + "=", 0) == 0) return args[i].substr(flag.size() + 1);
  return std::nullopt;
}

// The whole of `value` as a number (T: int64_t or double); nullopt when it is not one.
template <typename T>
std::optional<T> whole_number(const std::string& value) {
  try {
    size_t used = 0;
    T v{};
    if constexpr (std::is_integral_v<T>)
      v = static_cast<T>(std::stoll(value, &used));
    else
      v = static_cast<T>(std::stod(value, &used));
    if (used == value.size()) return v;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace

int plan_command(const std::vector<std::string>& args) {
  // --nproc-per-node N (or =N) and --device-memory GIB (or =GIB) are plan's own; everything else is the recipe's.
  int64_t world = 1;
  double device_gib = 0.0;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (auto v = option_value(args, i, "--device-memory", "the GPU's memory in GiB (for example 24 or 80)")) {
      device_gib = whole_number<double>(*v).value_or(0.0);
      if (!(device_gib > 0 && device_gib <= 1e6))
        throw UsageError("--device-memory must be a number of GiB above 0, got '" + *v + "'");
    } else if (auto n = option_value(args, i, "--nproc-per-node", "a number of ranks")) {
      world = whole_number<int64_t>(*n).value_or(0);
      if (world < 1) throw UsageError("--nproc-per-node must be a whole number >= 1, got '" + *n + "'");
    } else {
      rest.push_back(args[i]);
    }
  }
  RecipeArgs a = parse_recipe_args(rest);
  if (!a.rest.empty()) throw UsageError("unknown option '" + a.rest[0] + "'");
  auto registry = discover_plugins();
  // The plan reads no data, so a recipe whose dataset is not on this machine is planned too.
  std::optional<recipe::Recipe> loaded = load_recipe_or_report(a, *registry, /*data_must_exist=*/false);
  if (!loaded) return kExitUsage;
  recipe::Recipe& r = *loaded;
  r.data.train.clear();  // the plan reads only the model's config.json, from the cache
  r.data.eval.clear();
  HubSourceOptions hub_options;
  hub_options.download = false;
  resolve_hub_sources(r, hub_options);
  train::MemoryPlan plan;
  std::string where;
  if (device_gib > 0) {
    // A GPU that is not here (a laptop planning for a 24 GB card): the plugins' options are checked on the CPU.
    if (r.train.device == "cpu")
      throw UsageError("--device-memory plans for a CUDA GPU, but the recipe trains on the CPU (train.device = "
                       "\"cpu\"); set train.device = \"cuda\" or \"auto\", or leave --device-memory out");
    const int64_t bytes = static_cast<int64_t>(device_gib * 1024.0 * 1024.0 * 1024.0);
    plan = plan_before_loading(r, *registry, rt::cpu_device(), world, bytes);
    where = fmt::format("a CUDA GPU of {:g} GiB (--device-memory)", device_gib);
  } else {
    rt::Device* found = nullptr;
    try {
      found = &session::device_for(r.train.device);
    } catch (const Error& e) {
      fail_with(e.status(), "{}; to plan for a GPU that is not on this machine, pass --device-memory GIB (its "
                            "memory, e.g. 24 or 80)", e.what());
    }
    plan = plan_before_loading(r, *registry, *found, world);
    where = fmt::format("{}:{}", rt::device_type_name(found->type()), found->index());
  }
  if (world > 1 || r.parallel.present())
    where += fmt::format(", per rank of {} ({})", world, r.parallel.present() ? r.parallel.plugin : "ddp");
  std::cout << train::format_memory_plan(plan, where);
  return plan.fits() ? kExitOk : kExitRuntime;
}

}  // namespace engine::cli
