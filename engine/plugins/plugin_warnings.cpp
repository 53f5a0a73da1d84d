#include "engine/plugins/plugin_warnings.hpp"

#include <nlohmann/json.hpp>

#include "engine/abi/engine.h"
#include "engine/plugins/elf_exports.hpp"

namespace engine::plugins {

std::vector<std::string> plugin_warnings(const std::filesystem::path& path, const std::string& options_schema_json) {
  std::vector<std::string> out;
  if (auto symbols = elf_exported_symbols(path); symbols && symbols->size() > 1) {
    std::string some;
    size_t shown = 0;
    for (const std::string& s : *symbols) {
      if (s == ENG_PLUGIN_ENTRY_SYMBOL || shown == 3) continue;
      some += (shown++ ? ", " : "") + s;
    }
    out.push_back("exports " + std::to_string(symbols->size()) + " symbols (" + some +
                  ", ...) where a plugin exports only " + ENG_PLUGIN_ENTRY_SYMBOL +
                  "; its symbols can clash with the engine's or another plugin's. Build it with the SDK's "
                  "engine_add_plugin() (hidden visibility and a version script)");
  }
  try {
    const nlohmann::json schema = nlohmann::json::parse(options_schema_json);
    if (!schema.is_object()) {
      out.push_back("its options schema is JSON but not an object; the engine checks no option of it. Describe "
                    "the recipe section as {\"type\": \"object\", \"properties\": {...}}");
    } else if (schema.contains("properties") && !schema["properties"].is_object()) {
      out.push_back("its options schema's \"properties\" is not an object; the engine checks no option of it");
    }
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
    out.push_back(std::string("its options schema is not valid JSON (") + e.what() +
                  "); the engine cannot check its recipe options. Fix the schema string the plugin registers");
  }
  return out;
}

}  // namespace engine::plugins
