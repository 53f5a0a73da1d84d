#include "lora_options.hpp"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "engine/cpp/error.hpp"
#include "engine/cpp/json.hpp"

namespace lora {

using engine::sdk::Error;
using engine::sdk::Json;

// target_modules has no "type": it is a string or an array of strings, checked here.
const char kLoraSchema[] = R"json({"type": "object", "properties": {
  "r": {"type": "integer", "default": 8, "minimum": 1, "maximum": 65536, "description": "LoRA rank"},
  "lora_alpha": {"type": "number", "default": 16, "minimum": 0, "description": "scaling numerator (scaling = lora_alpha / r)"},
  "lora_dropout": {"type": "number", "default": 0.0, "minimum": 0, "maximum": 0.999, "description": "dropout on the adapter input while training"},
  "use_rslora": {"type": "boolean", "default": false, "description": "rank-stabilised scaling lora_alpha / sqrt(r)"},
  "target_modules": {"default": "all-linear", "description": "\"all-linear\", a list of module names (q_proj, ...) or a regular expression"}
}})json";

double LoraOptions::scaling() const {
  return use_rslora ? lora_alpha / std::sqrt(static_cast<double>(r)) : lora_alpha / static_cast<double>(r);
}

std::vector<std::string> LoraOptions::saved_target_modules(const std::vector<std::string>& targeted) const {
  if (!target_names.empty()) {
    std::set<std::string> names(target_names.begin(), target_names.end());
    return {names.begin(), names.end()};
  }
  // all-linear and regular expressions: the short names of what was targeted, which PEFT matches by suffix.
  std::set<std::string> names;
  for (const std::string& m : targeted) {
    size_t dot = m.rfind('.');
    names.insert(dot == std::string::npos ? m : m.substr(dot + 1));
  }
  return {names.begin(), names.end()};
}

LoraOptions parse_lora_options(const std::string& options_json) {
  Json o = Json::parse(options_json.empty() ? "{}" : options_json);
  static const std::set<std::string> known = {"r", "lora_alpha", "lora_dropout", "use_rslora",
                                              "target_modules"};
  if (o.is_object()) {
    for (const auto& [key, value] : o.members()) {
      (void)value;
      if (!known.count(key)) {
        throw Error("lora: unknown option '" + key +
                    "'; the options are r, lora_alpha, lora_dropout, use_rslora, target_modules");
      }
    }
  }
  LoraOptions opt;
  opt.r = o.get("r", int64_t{8});
  opt.lora_alpha = o.get("lora_alpha", 16.0);
  opt.lora_dropout = o.get("lora_dropout", 0.0);
  opt.use_rslora = o.get("use_rslora", false);
  if (opt.r < 1) throw Error("lora: r must be >= 1, got " + std::to_string(opt.r));
  if (!(opt.lora_dropout >= 0.0 && opt.lora_dropout < 1.0)) {
    throw Error("lora: lora_dropout must lie in [0, 1), got " + std::to_string(opt.lora_dropout));
  }
  // Which modules the list names is the engine's matcher's business (host target_match, one rule for
  // every plugin); kept here: the list as JSON for it, and the names for adapter_config.json.
  const nlohmann::json all = nlohmann::json::parse(options_json.empty() ? "{}" : options_json);
  const nlohmann::json spec =
      all.contains("target_modules") && !all["target_modules"].is_null() ? all["target_modules"] : nlohmann::json("all-linear");
  opt.target_spec = spec.dump();
  // A regular expression is checked when the options are read (so `engine validate` refuses it), with the
  // same std::regex grammar the engine's matcher applies at attach.
  if (spec.is_string() && spec.get<std::string>() != "all-linear") {
    try {
      std::regex check(spec.get<std::string>());
    } catch (const std::regex_error& e) {
      throw Error("lora: target_modules '" + spec.get<std::string>() + "' is not a valid regular expression (" +
                  e.what() + "); give \"all-linear\", a list of module names or a valid regular expression");
    }
  }
  if (spec.is_array()) {
    for (const nlohmann::json& t : spec) {
      if (t.is_string() && t.get<std::string>() != "all-linear") opt.target_names.push_back(t.get<std::string>());
    }
  }
  return opt;
}

}  // namespace lora
