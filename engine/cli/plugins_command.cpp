// engine plugins [--json] | engine plugins describe NAME
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/cli/command.hpp"
#include "engine/plugins/plugin_kind.hpp"
#include "engine/plugins/spelling.hpp"
#include "engine/recipe/field_spec.hpp"
#include "engine/recipe/recipe_sections.hpp"

namespace engine::cli {

namespace {

using nlohmann::json;

std::string capabilities_text(const plugins::PluginRecord& r) {
  std::vector<std::string> out;
  if (r.has(ENG_CAP_DEVICE_CPU)) out.push_back("cpu");
  if (r.has(ENG_CAP_DEVICE_CUDA)) out.push_back("cuda");
  switch (r.kind) {
    case ENG_KIND_MODEL:
      if (r.has(ENG_MODEL_CAP_KV_CACHE)) out.push_back("kv-cache");
      if (r.has(ENG_MODEL_CAP_PACKING)) out.push_back("packing");
      break;
    case ENG_KIND_QUANTIZER:
      if (r.has(ENG_QUANT_CAP_FROZEN_ONLY)) out.push_back("frozen-only");
      if (r.has(ENG_QUANT_CAP_PREQUANTIZED)) out.push_back("prequantized");
      break;
    case ENG_KIND_PEFT:
      if (r.has(ENG_PEFT_CAP_QUANTIZED_BASE)) out.push_back("quantized-base");
      if (r.has(ENG_PEFT_CAP_MERGE)) out.push_back("merge");
      break;
    case ENG_KIND_PARALLEL:
      if (r.has(ENG_PAR_CAP_SHARDS_PARAMS)) out.push_back("shards-params");
      if (r.has(ENG_PAR_CAP_QUANTIZED)) out.push_back("quantized");
      break;
    case ENG_KIND_OPTIMIZER:
      if (r.has(ENG_OPT_CAP_SHARDED)) out.push_back("sharded");
      break;
    default:
      break;
  }
  return plugins::join(out, " ");
}

int describe(const plugins::PluginRegistry& registry, const std::string& name) {
  std::vector<const plugins::PluginRecord*> found = registry.find_any_kind(name);
  if (found.empty()) {
    std::vector<std::string> all;
    for (const plugins::PluginRecord* r : registry.list()) all.push_back(r->name);
    std::cerr << "engine: no plugin named '" << name << "'" << plugins::did_you_mean(name, all)
              << " (plugins found: " << (all.empty() ? std::string("none") : plugins::join(all)) << ")\n";
    return kExitUsage;
  }
  for (const plugins::PluginRecord* r : found) {
    std::cout << r->name << " " << r->version << " — " << plugins::kind_name(r->kind) << " plugin, ABI "
              << plugins::abi_string(r->abi_version) << "\n  " << r->description
              << "\n  file: " << r->path.string() << "\n  capabilities: " << capabilities_text(*r)
              << "\n";
    for (const std::string& w : r->warnings) std::cout << "  warning: " << w << "\n";
    std::cout << "  options ([" << plugins::kind_name(r->kind) << "] section of a recipe):\n";
    std::vector<recipe::FieldSpec> fields = recipe::parse_schema(r->options_schema_json, r->name);
    if (fields.empty()) std::cout << "    (none)\n";
    for (const recipe::FieldSpec& f : fields) {
      std::cout << "    " << f.name << " (" << recipe::describe_constraints(f) << ")";
      if (!f.description.empty()) std::cout << "\n        " << f.description;
      std::cout << "\n";
    }
    // The section's own keys (optimizer.lr, model.path, ...) sit next to the plugin's options in a recipe.
    const recipe::SectionSpec* section = recipe::find_section(plugins::kind_name(r->kind));
    if (section == nullptr) continue;
    std::cout << "  engine keys of the same section:\n";
    for (const recipe::FieldSpec& f : section->fields) {
      if (f.name == "plugin") continue;
      std::cout << "    " << f.name << " (" << recipe::describe_constraints(f) << ")";
      if (!f.description.empty()) std::cout << "\n        " << f.description;
      std::cout << "\n";
    }
  }
  return kExitOk;
}

}  // namespace

int plugins_command(const std::vector<std::string>& args) {
  bool as_json = false;
  std::string describe_name;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--json") {
      as_json = true;
    } else if (args[i] == "describe") {
      if (i + 1 >= args.size()) throw UsageError("plugins describe needs a plugin name");
      describe_name = args[++i];
    } else {
      throw UsageError("unexpected argument '" + args[i] + "'");
    }
  }
  auto registry = discover_plugins();
  if (!describe_name.empty()) return describe(*registry, describe_name);

  std::vector<const plugins::PluginRecord*> all = registry->list();
  if (as_json) {
    json out = json::array();
    for (const plugins::PluginRecord* r : all) {
      out.push_back({{"name", r->name},
                     {"kind", plugins::kind_name(r->kind)},
                     {"version", r->version},
                     {"abi", plugins::abi_string(r->abi_version)},
                     {"path", r->path.string()},
                     {"description", r->description},
                     {"warnings", r->warnings}});
    }
    std::cout << out.dump(2) << "\n";
  } else {
    if (all.empty())
      std::cout << "no plugins found (search path: ENGINE_PLUGIN_PATH, then the installed folder)\n";
    for (const plugins::PluginRecord* r : all) {
      std::printf("%-10s %-18s %-8s ABI %-5s %s\n    %s\n", plugins::kind_name(r->kind), r->name.c_str(),
                  r->version.c_str(), plugins::abi_string(r->abi_version).c_str(), r->path.string().c_str(),
                  r->description.c_str());
      for (const std::string& w : r->warnings) std::printf("    warning: %s\n", w.c_str());
    }
  }
  if (!as_json && !registry->shadowed().empty()) {
    std::cout << "\nshadowed:\n";
    for (const plugins::LoadProblem& p : registry->shadowed()) std::cout << "  " << p.message << "\n";
  }
  // Refused files are logged as warnings (stderr) while loading; the text listing repeats them.
  if (!as_json && !registry->problems().empty()) {
    std::cout << "\nrefused:\n";
    for (const plugins::LoadProblem& p : registry->problems()) {
      std::cout << "  " << p.path.string() << "\n    " << p.message << "\n";
    }
  }
  return kExitOk;
}

}  // namespace engine::cli
