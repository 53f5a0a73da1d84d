// read_hf_config: a Hugging Face model's config.json, as text and parsed JSON, with the few fields the
// engine itself needs. Model plugins receive the text and parse their own sizes from it.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

namespace engine::io {

struct HfConfig {
  std::filesystem::path path;  // the config.json that was read
  std::string text;            // its exact contents
  nlohmann::json json;         // parsed; always an object with a string "model_type"

  // "model_type", e.g. "qwen2", "llama".
  const std::string& model_type() const;

  // The first entry of "architectures", e.g. "Qwen2ForCausalLM"; empty when the config has none.
  std::string architecture() const;
};

// Reads <model_dir>/config.json (a path to the file itself is accepted too). engine::Error for a missing
// directory or file, invalid JSON (with line and column), a non-object, or a missing/non-string model_type.
HfConfig read_hf_config(const std::filesystem::path& model_dir);

}  // namespace engine::io
