// Plugin kinds by name ("model", "quantizer", ...) for messages, recipes and `engine plugins`.
#pragma once

#include <optional>
#include <string_view>

#include "engine/abi/engine.h"

namespace engine::plugins {

// "model", "quantizer", "peft", "parallel", "optimizer"; "unknown" otherwise.
const char* kind_name(eng_plugin_kind kind) noexcept;
// The kind a name denotes, if any.
std::optional<eng_plugin_kind> kind_from_name(std::string_view name) noexcept;
// "major.minor" of a packed ABI version.
std::string abi_string(uint32_t version);

}  // namespace engine::plugins
