#include "engine/plugins/plugin_kind.hpp"

#include <string>

namespace engine::plugins {

const char* kind_name(eng_plugin_kind kind) noexcept {
  switch (kind) {
    case ENG_KIND_MODEL:
      return "model";
    case ENG_KIND_QUANTIZER:
      return "quantizer";
    case ENG_KIND_PEFT:
      return "peft";
    case ENG_KIND_PARALLEL:
      return "parallel";
    case ENG_KIND_OPTIMIZER:
      return "optimizer";
    default:
      return "unknown";
  }
}

std::optional<eng_plugin_kind> kind_from_name(std::string_view name) noexcept {
  for (eng_plugin_kind k :
       {ENG_KIND_MODEL, ENG_KIND_QUANTIZER, ENG_KIND_PEFT, ENG_KIND_PARALLEL, ENG_KIND_OPTIMIZER}) {
    if (name == kind_name(k)) return k;
  }
  return std::nullopt;
}

std::string abi_string(uint32_t version) {
  return std::to_string(ENG_ABI_MAJOR_OF(version)) + "." + std::to_string(ENG_ABI_MINOR_OF(version));
}

}  // namespace engine::plugins
