#include "engine/data/chat_template.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/core/error.hpp"
#include "engine/data/utf8_codec.hpp"

namespace engine::data {
namespace {

constexpr std::string_view kQwen2System = "You are a helpful assistant.";
constexpr std::string_view kQwen25System =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

// Python's str.isspace for one code point (what Jinja's trim and str.strip() remove).
bool is_python_space(char32_t cp) { return is_unicode_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F); }

// Jinja's |trim (Python str.strip()).
std::string_view trim(std::string_view s) {
  size_t start = 0, end = s.size();
  while (start < end) {
    size_t length = 0;
    if (!is_python_space(decode_utf8(s, start, length))) break;
    start += length;
  }
  while (end > start) {
    size_t length = 0;
    if (!is_python_space(decode_utf8_before(s, end, length))) break;
    end -= length;
  }
  return s.substr(start, end - start);
}

std::string_view lstrip_newlines(std::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  return s;
}
std::string_view rstrip_newlines(std::string_view s) {
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}

void check_role(const ChatMessage& m, std::string_view template_name) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant") {
    fail("chat template {}: message role \"{}\" is not supported (supported: system, user, assistant)",
         template_name, m.role);
  }
}

}  // namespace

ChatTemplate::ChatTemplate(Variant v) : variant_(v) {
  if (v == Variant::kQwen2) system_prompt_ = std::string(kQwen2System);
  if (v == Variant::kQwen25) system_prompt_ = std::string(kQwen25System);
}

ChatTemplate ChatTemplate::by_name(std::string_view name) {
  if (name == "chatml") return ChatTemplate(Variant::kChatml);
  if (name == "qwen2") return ChatTemplate(Variant::kQwen2);
  if (name == "qwen2.5") return ChatTemplate(Variant::kQwen25);
  if (name == "qwen3") return ChatTemplate(Variant::kQwen3);
  if (name == "llama3") return ChatTemplate(Variant::kLlama3);
  if (name == "llama3.1") return ChatTemplate(Variant::kLlama31);
  fail("unknown chat template \"{}\" (known: chatml, qwen2, qwen2.5, qwen3, llama3, llama3.1)", name);
}

ChatTemplate ChatTemplate::recognise(std::string_view jinja, const std::string& where) {
  const auto has = [&](std::string_view needle) { return jinja.find(needle) != std::string_view::npos; };
  if (has("<|start_header_id|>") && has("<|eot_id|>")) {
    return ChatTemplate(has("Cutting Knowledge Date") ? Variant::kLlama31 : Variant::kLlama3);
  }
  if (has("<|im_start|>") && has("<|im_end|>")) {
    if (has("<think>")) return ChatTemplate(Variant::kQwen3);
    if (has(kQwen25System)) return ChatTemplate(Variant::kQwen25);
    if (has(kQwen2System)) return ChatTemplate(Variant::kQwen2);
    return ChatTemplate(Variant::kChatml);
  }
  fail(
      "the chat template in {} is not one the engine knows (built in: ChatML as in Qwen, and Llama 3's "
      "header "
      "format); set data.chat_template to one of chatml, qwen2, qwen2.5, qwen3, llama3, llama3.1",
      where);
}

ChatTemplate ChatTemplate::from_tokenizer_config(const std::filesystem::path& path) {
  std::filesystem::path file = path;
  if (std::filesystem::is_directory(file)) file /= "tokenizer_config.json";
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    fail_with(ENG_ERR_IO, "cannot open {} to find the chat template; set data.chat_template instead",
              file.string());
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(buffer.str());
  } catch (const nlohmann::json::exception& e) {
    fail("{} is not valid JSON: {}", file.string(), e.what());
  }
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) {
    fail(
        "{} has no chat_template; set data.chat_template to one of chatml, qwen2, qwen2.5, qwen3, llama3, "
        "llama3.1",
        file.string());
  }
  if (it->is_string()) return recognise(it->get<std::string>(), file.string());
  if (it->is_array()) {  // [{"name": "default", "template": "..."}, ...]
    for (const auto& entry : *it) {
      if (entry.value("name", "") == "default") return recognise(entry.value("template", ""), file.string());
    }
  }
  fail("{}: chat_template has no default template; set data.chat_template", file.string());
}

std::string_view ChatTemplate::name() const noexcept {
  switch (variant_) {
    case Variant::kChatml:
      return "chatml";
    case Variant::kQwen2:
      return "qwen2";
    case Variant::kQwen25:
      return "qwen2.5";
    case Variant::kQwen3:
      return "qwen3";
    case Variant::kLlama3:
      return "llama3";
    case Variant::kLlama31:
      return "llama3.1";
  }
  return "?";
}

std::string_view ChatTemplate::end_of_turn() const noexcept {
  return variant_ == Variant::kLlama3 || variant_ == Variant::kLlama31 ? "<|eot_id|>" : "<|im_end|>";
}

RenderedChat ChatTemplate::render(std::span<const ChatMessage> input, bool add_generation_prompt,
                                  bool enable_thinking) const {
  for (const auto& m : input) check_role(m, name());
  std::vector<ChatMessage> messages(input.begin(), input.end());
  if (system_prompt_ && (messages.empty() || messages.front().role != "system")) {
    messages.insert(messages.begin(), ChatMessage{"system", *system_prompt_});
  }
  RenderedChat out;
  std::string& text = out.text;
  const auto assistant_span = [&](size_t start) { out.assistant.push_back({start, text.size()}); };

  if (variant_ == Variant::kLlama3 || variant_ == Variant::kLlama31) {
    text += "<|begin_of_text|>";
    size_t first = 0;
    if (variant_ == Variant::kLlama31) {
      std::string_view system;
      if (!messages.empty() && messages.front().role == "system") {
        system = trim(messages.front().content);
        first = 1;
      }
      text += "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n";
      text += "Today Date: 26 Jul 2024\n\n";
      text += system;
      text += "<|eot_id|>";
    }
    for (size_t i = first; i < messages.size(); ++i) {
      const ChatMessage& m = messages[i];
      text += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
      const size_t start = text.size();
      text += trim(m.content);
      text += "<|eot_id|>";
      if (m.role == "assistant") assistant_span(start);
    }
    if (add_generation_prompt) text += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
  }

  // ChatML family.
  size_t last_query = messages.empty() ? 0 : messages.size() - 1;  // Qwen3: index of the last user message
  for (size_t i = messages.size(); i-- > 0;) {
    if (messages[i].role == "user") {
      last_query = i;
      break;
    }
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role != "assistant") {
      text += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      continue;
    }
    text += "<|im_start|>assistant\n";
    const size_t start = text.size();
    if (variant_ == Variant::kQwen3) {
      std::string_view content = m.content, reasoning;
      const size_t close = content.find("</think>");
      if (close != std::string_view::npos) {
        const std::string_view full = m.content;
        content = lstrip_newlines(full.substr(full.rfind("</think>") + 8));
        std::string_view before = rstrip_newlines(full.substr(0, close));
        const size_t open = before.rfind("<think>");
        if (open != std::string_view::npos) before = before.substr(open + 7);
        reasoning = lstrip_newlines(before);
      }
      const bool last = i + 1 == messages.size();
      if (i > last_query && (last || !reasoning.empty())) {
        text += "<think>\n";
        text += lstrip_newlines(rstrip_newlines(reasoning));
        text += "\n</think>\n\n";
        text += lstrip_newlines(content);
      } else {
        text += content;
      }
    } else {
      text += m.content;
    }
    text += "<|im_end|>";
    assistant_span(start);
    text += "\n";
  }
  if (add_generation_prompt) {
    text += "<|im_start|>assistant\n";
    if (variant_ == Variant::kQwen3 && !enable_thinking) text += "<think>\n\n</think>\n\n";
  }
  return out;
}

}  // namespace engine::data
