// LoraOptions: the [peft] section of a recipe for plugin = "lora", named as PEFT's LoraConfig names them.
//   r = 16                     rank
//   lora_alpha = 32            scaling numerator: scaling = lora_alpha / r (or / sqrt(r) with use_rslora)
//   lora_dropout = 0.05        dropout on the adapter's input (training only)
//   use_rslora = false         rank-stabilised scaling alpha / sqrt(r)
//   target_modules = "all-linear" | ["q_proj", "v_proj", ...] | a regular expression (full match)
// Target matching is the engine's (host target_match, docs/PLUGINS.md "Targets"), which follows PEFT: a name
// in the list matches a module whose name equals it or ends with "." + it; a string other than "all-linear"
// is a regular expression matched against the whole module name; "all-linear" takes every projection inside
// the decoder blocks (never the output layer lm_head).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lora {

struct LoraOptions {
  int64_t r = 8;
  double lora_alpha = 16.0;
  double lora_dropout = 0.0;
  bool use_rslora = false;
  std::string target_spec;                // target_modules as JSON, for the engine's matcher
  std::vector<std::string> target_names;  // the names of a list (what adapter_config.json records)

  double scaling() const;
  // What adapter_config.json records as target_modules for the modules actually targeted.
  std::vector<std::string> saved_target_modules(const std::vector<std::string>& targeted_modules) const;
};

// Parses and checks the options JSON the engine hands the plugin (defaults already filled in).
LoraOptions parse_lora_options(const std::string& options_json);

extern const char kLoraSchema[];

}  // namespace lora
