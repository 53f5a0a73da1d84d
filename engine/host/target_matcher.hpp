// TargetMatcher: the engine's one way of saying which modules a recipe's target list names, shared by every
// PEFT method (target_modules) and quantizer (skip lists) through the host entry target_match, so that two
// plugins given the same list pick the same modules. The spec is JSON, as the recipe wrote it:
//   "all-linear"            every projection (an ENG_ROLE_LINEAR "<module>.weight") declared inside a decoder
//                           block; never the output layer (lm_head), as in Hugging Face PEFT
//   "<regular expression>"  any other string: ECMAScript regex matched against the whole module name
//   ["q_proj", "mlp.up_proj", "model.layers.0.self_attn.k_proj", ...]
//                           a module matches an entry it equals (exact name) or ends with after a "."
//                           (the last component "q_proj", or a longer suffix "mlp.up_proj")
// Names are module names ("model.layers.0.self_attn.q_proj"); a parameter name's trailing ".weight" or
// ".bias" is dropped first.
#pragma once

#include <regex>
#include <string>
#include <vector>

namespace engine::host {

class TargetMatcher {
 public:
  // engine::Error (ENG_ERR_INVALID_ARGUMENT) naming what is wrong: not JSON, not a string or a list of
  // strings, an empty list, "all-linear" mixed with names, an invalid regular expression.
  static TargetMatcher parse(const std::string& spec_json);

  // `block_linear`: the module's weight is a projection declared inside a decoder block (all-linear).
  bool matches(const std::string& module, bool block_linear) const;
  bool all_linear() const { return all_linear_; }

  // "model.layers.0.mlp.up_proj.weight" -> "model.layers.0.mlp.up_proj"; a module name is returned as is.
  static std::string module_of(const std::string& name);

 private:
  bool all_linear_ = false;
  bool is_regex_ = false;
  std::regex regex_;
  std::vector<std::string> names_;
};

}  // namespace engine::host
