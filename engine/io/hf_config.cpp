#include "engine/io/hf_config.hpp"

#include <fstream>
#include <sstream>

#include "engine/core/error.hpp"

namespace engine::io {
namespace {

// 1-based line and column of byte offset `pos` in `text`.
std::pair<size_t, size_t> line_and_column(const std::string& text, size_t pos) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < pos && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

}  // namespace

const std::string& HfConfig::model_type() const {
  return json.at("model_type").get_ref<const std::string&>();
}

std::string HfConfig::architecture() const {
  const auto it = json.find("architectures");
  if (it == json.end() || !it->is_array() || it->empty() || !(*it)[0].is_string()) return {};
  return (*it)[0].get<std::string>();
}

HfConfig read_hf_config(const std::filesystem::path& model_dir) {
  std::error_code ec;
  HfConfig config;
  if (std::filesystem::is_regular_file(model_dir, ec)) {
    config.path = model_dir;
  } else if (std::filesystem::is_directory(model_dir, ec)) {
    config.path = model_dir / "config.json";
    if (!std::filesystem::exists(config.path, ec)) {
      fail_with(
          ENG_ERR_NOT_FOUND,
          "model directory {} has no config.json; a Hugging Face model directory needs one (copy it from "
          "the model's repository)",
          model_dir.string());
    }
  } else {
    fail_with(ENG_ERR_NOT_FOUND, "model directory {} does not exist (check the model path in the recipe)",
              model_dir.string());
  }
  std::ifstream in(config.path, std::ios::binary);
  if (!in) fail_with(ENG_ERR_IO, "cannot read {}", config.path.string());
  std::ostringstream text;
  text << in.rdbuf();
  config.text = text.str();
  try {
    config.json = nlohmann::json::parse(config.text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based: the byte just read when the error was found.
    const auto [line, column] = line_and_column(config.text, e.byte > 0 ? e.byte - 1 : 0);
    fail("{}:{}:{}: invalid JSON: {}", config.path.string(), line, column, e.what());
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", config.path.string(), e.what());
  }
  if (!config.json.is_object()) {
    fail("{}: expected a JSON object, found a JSON {}", config.path.string(), config.json.type_name());
  }
  const auto it = config.json.find("model_type");
  if (it == config.json.end()) {
    fail(
        "{}: no \"model_type\" key; every transformers config names its model type (e.g. \"qwen2\", "
        "\"llama\")",
        config.path.string());
  }
  if (!it->is_string()) {
    fail("{}: \"model_type\" is a JSON {}, expected a string such as \"qwen2\"", config.path.string(),
         it->type_name());
  }
  return config;
}

}  // namespace engine::io
