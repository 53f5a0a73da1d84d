#include "lora_options.hpp"

#include <algorithm>
#include <cmath>
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

bool LoraOptions::targets(const std::string& module, bool in_block) const {
  if (all_linear) return in_block;
  if (!target_regex.empty()) return std::regex_match(module, std::regex(target_regex));
  for (const std::string& t : target_names) {
    if (module == t) return true;
    if (module.size() > t.size() && module.compare(module.size() - t.size(), t.size(), t) == 0 &&
        module[module.size() - t.size() - 1] == '.') {
      return true;
    }
  }
  return false;
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
  if (!o.contains("target_modules") || o["target_modules"].is_null()) {
    opt.all_linear = true;
  } else if (o["target_modules"].is_string()) {
    const std::string& t = o["target_modules"].as_string();
    if (t == "all-linear") {
      opt.all_linear = true;
    } else {
      try {
        std::regex check(t);
      } catch (const std::regex_error& e) {
        throw Error("lora: target_modules '" + t + "' is not a valid regular expression (" + e.what() +
                    "); give \"all-linear\", a list of names, or a regular expression");
      }
      opt.target_regex = t;
    }
  } else if (o["target_modules"].is_array()) {
    for (const Json& t : o["target_modules"].items()) {
      if (!t.is_string()) throw Error("lora: target_modules must list module names as strings");
      if (t.as_string() == "all-linear") {
        opt.all_linear = true;
      } else {
        opt.target_names.push_back(t.as_string());
      }
    }
    if (opt.all_linear && !opt.target_names.empty()) {
      throw Error("lora: target_modules mixes \"all-linear\" with names; give one or the other");
    }
    if (!opt.all_linear && opt.target_names.empty()) throw Error("lora: target_modules is an empty list");
  } else {
    throw Error(
        "lora: target_modules must be \"all-linear\", a list of module names or a regular expression");
  }
  return opt;
}

}  // namespace lora
