// decoder_plugin.hpp: the registration shared by the model plugins on the decoder (llama, qwen2). A plugin
// names its architecture and its presets, and this file does the rest:
//   #include "decoder_presets.hpp"  // generated from the plugin's presets/*.json (decoder_plugin.cmake)
//   ENGINE_REGISTER_DECODER(kLlama, "llama", "0.1.0", "one-line description")
// Presets are the config.json texts that `engine init-model --arch <name> --preset <preset>` writes.
#pragma once

#include <cstring>
#include <string>

#include "engine/cpp/model.hpp"
#include "plugins/common/decoder_model.hpp"

namespace engine::plugins::decoder {

// One `init-model` preset: its name and the config.json text.
struct Preset {
  const char* name;
  const char* config_json;
};

// The model class of a decoder plugin: DecoderModel for `kArch`, with the presets of `kPresets` (an array of
// Preset with static storage).
template <Arch kArch, const auto& kPresets>
class DecoderPlugin final : public DecoderModel {
 public:
  DecoderPlugin(sdk::Host& host, const std::string& hf_config_json, const std::string& options_json)
      : DecoderModel(host, hf_config_json, options_json, kArch) {}

  // The config.json text of a preset, nullptr for a name it does not have.
  static const char* preset_config(const char* preset) {
    if (preset == nullptr) return nullptr;
    for (const Preset& p : kPresets)
      if (std::strcmp(p.name, preset) == 0) return p.config_json;
    return nullptr;
  }
};

}  // namespace engine::plugins::decoder

// ENGINE_REGISTER_DECODER(kArch, "name", "1.2.3", "one-line description"): the plugin's entry symbol, for
// the decoder of Arch::kArch with the kPresets of the plugin's generated decoder_presets.hpp, the decoder's
// options schema and its capabilities.
#define ENGINE_REGISTER_DECODER(arch, name, version, description)                       \
  namespace {                                                                           \
  using EngineDecoderPlugin =                                                           \
      ::engine::plugins::decoder::DecoderPlugin<::engine::plugins::decoder::Arch::arch, \
                                                ::engine::plugins::decoder::kPresets>;  \
  }                                                                                     \
  ENGINE_REGISTER_MODEL(EngineDecoderPlugin, name, version, description,                \
                        ::engine::plugins::decoder::kOptionsSchema,                     \
                        ::engine::plugins::decoder::kCapabilities)
