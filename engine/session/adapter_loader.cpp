// Adapter loading (see adapter_loader.hpp).
#include "engine/session/adapter_loader.hpp"

#include <cctype>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"
#include "engine/recipe/field_spec.hpp"

namespace engine::session {

namespace {

// option name in a PEFT plugin's schema -> the adapter_config.json keys that hold its value, in order
const std::vector<std::pair<std::string, std::vector<std::string>>> kAdapterConfigKeys = {
    {"r", {"r"}},
    {"rank", {"r"}},
    {"alpha", {"lora_alpha", "alpha"}},
    {"lora_alpha", {"lora_alpha"}},
    {"dropout", {"lora_dropout", "dropout"}},
    {"lora_dropout", {"lora_dropout"}},
    {"target_modules", {"target_modules"}},
    {"bias", {"bias"}},
    {"use_rslora", {"use_rslora"}},
    {"use_dora", {"use_dora"}},
    {"init_lora_weights", {"init_lora_weights"}},
    {"modules_to_save", {"modules_to_save"}},
    {"fan_in_fan_out", {"fan_in_fan_out"}},
};

nlohmann::json read_json(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    fail_with(ENG_ERR_IO, "cannot open {}: is this a PEFT adapter directory (adapter_config.json)?",
              file.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return nlohmann::json::parse(buffer.str());
  } catch (const nlohmann::json::exception& e) {
    fail("{} is not valid JSON: {}", file.string(), e.what());
  }
}

}  // namespace

std::string peft_plugin_name(const nlohmann::json& adapter_config, const std::string& where) {
  auto it = adapter_config.find("peft_type");
  if (it == adapter_config.end() || !it->is_string() || it->get<std::string>().empty())
    fail("{} has no \"peft_type\" (e.g. \"LORA\"); it is not a PEFT adapter config", where);
  std::string name = it->get<std::string>();
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::string peft_options_from_adapter_config(const nlohmann::json& adapter_config,
                                             const std::string& schema_json, const std::string& plugin_name) {
  nlohmann::json options = nlohmann::json::object();
  for (const recipe::FieldSpec& spec : recipe::parse_schema(schema_json, plugin_name)) {
    std::optional<nlohmann::json> value;
    for (const auto& [option, keys] : kAdapterConfigKeys) {
      if (option != spec.name) continue;
      for (const std::string& key : keys) {
        auto it = adapter_config.find(key);
        if (it != adapter_config.end() && !it->is_null()) {
          value = *it;
          break;
        }
      }
    }
    if (!value && spec.default_value) value = *spec.default_value;
    if (!value) continue;  // the plugin reports a missing required option itself
    // target_modules may be a single regex string in PEFT; the plugin's schema decides what it accepts
    const std::string why = recipe::check_value(spec, *value);
    if (!why.empty()) {
      fail("adapter option '{}' for PEFT plugin '{}': {} (from adapter_config.json)", spec.name, plugin_name,
           why);
    }
    options[spec.name] = *value;
  }
  return options.dump();
}

std::unique_ptr<host::PluginPeft> load_adapter(host::HostSession& session,
                                               const plugins::PluginRegistry& registry,
                                               const std::filesystem::path& dir) {
  const std::filesystem::path config_file = dir / "adapter_config.json";
  nlohmann::json config = read_json(config_file);
  const std::string name = peft_plugin_name(config, config_file.string());
  const plugins::PluginRecord& plugin = registry.require(ENG_KIND_PEFT, name);
  const std::string options = peft_options_from_adapter_config(config, plugin.options_schema_json, name);
  auto peft = std::make_unique<host::PluginPeft>(session, host::host_api(), plugin.table<eng_peft_vtable>(),
                                                 name, options);
  peft->attach();
  session.set_peft(peft.get());
  eng_ctx ctx = session.context(false);
  session.clear_error();
  const std::string path = dir.string();
  eng_status s = peft->vtable().load(peft->self(), &ctx, path.c_str());
  if (s != ENG_OK) {
    std::string message = session.error();
    fail_with(s, "PEFT plugin '{}' could not load the adapter in {}: {}", name, path,
              message.empty() ? status_name(s) : message);
  }
  return peft;
}

}  // namespace engine::session
