// The small byte-level BPE tokenizers `engine init-model` writes beside a preset model (tokenizer.json and
// tokenizer_config.json with the chat template), embedded in the binary at build time from
// tests/data/models/tokenizers/<arch>/ (made by scripts/fixtures/make_model_fixtures.py; 512 ids, the special
// token ids the plugins' tiny/small presets use).
#pragma once

#include <optional>
#include <string_view>

namespace engine::cli {

struct PresetTokenizerFiles {
  std::string_view tokenizer_json;
  std::string_view tokenizer_config_json;
};

// The files for "qwen2" or "llama"; nullopt for any other architecture.
std::optional<PresetTokenizerFiles> preset_tokenizer_files(std::string_view arch);

}  // namespace engine::cli
