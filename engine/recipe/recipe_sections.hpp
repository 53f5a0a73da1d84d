// The engine's own recipe sections and keys: name, type, default, allowed values, help. Adding a key is one
// line in recipe_sections.cpp plus reading it into Recipe in recipe_loader.cpp (and a line in README.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/abi/engine.h"
#include "engine/recipe/field_spec.hpp"

namespace engine::recipe {

// The largest data.max_seq_len: 2^20 tokens, beyond every published context length (the per-row buffers
// are allocated up front, so a typo such as 1e9 must be refused, not attempted).
inline constexpr int64_t kMaxSeqLen = int64_t{1} << 20;

struct SectionSpec {
  std::string name;
  std::optional<eng_plugin_kind> plugin_kind;  // sections that choose a plugin (key `plugin`)
  bool required = false;                       // the recipe must have this section
  std::vector<FieldSpec> fields;               // the engine's keys (a plugin's options come on top)
  std::vector<std::string> path_keys;  // string keys holding paths, resolved against the recipe's folder
};

const std::vector<SectionSpec>& recipe_sections();
const SectionSpec* find_section(const std::string& name);

}  // namespace engine::recipe
