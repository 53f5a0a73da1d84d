// Adapter loading for inference (`engine generate --adapter DIR`): a PEFT adapter directory in Hugging Face
// PEFT's format (adapter_config.json + adapter_model.safetensors) applied to a loaded model through the PEFT
// plugin that made it.
//
//   1. adapter_config.json's "peft_type" ("LORA") names the plugin (lower-cased: "lora").
//   2. The plugin's options are built from its own options schema: each option takes the adapter_config.json
//      value of the same meaning (r, alpha <- lora_alpha, dropout <- lora_dropout, target_modules, ... see
//      kAdapterConfigKeys), else the schema's default. The plugin is created with them and attached (it picks
//      the same target linears and declares its adapter parameters).
//   3. The plugin's load(dir) reads the adapter weights into those parameters.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/host/host_session.hpp"
#include "engine/host/plugin_peft.hpp"
#include "engine/plugins/plugin_registry.hpp"

namespace engine::session {

// The PEFT plugin name for an adapter_config.json ("LORA" -> "lora"); engine::Error when peft_type is absent.
std::string peft_plugin_name(const nlohmann::json& adapter_config, const std::string& where);

// The plugin's options for this adapter, following its options schema (see the file comment).
std::string peft_options_from_adapter_config(const nlohmann::json& adapter_config,
                                             const std::string& schema_json, const std::string& plugin_name);

// Creates the adapter's PEFT plugin in `session`, attaches it to the declared model parameters, installs it
// as the session's PEFT method and loads the adapter weights from `dir`. The returned object must outlive
// every forward of the session.
std::unique_ptr<host::PluginPeft> load_adapter(host::HostSession& session,
                                               const plugins::PluginRegistry& registry,
                                               const std::filesystem::path& dir);

}  // namespace engine::session
