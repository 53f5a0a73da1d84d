// Chat templates, built in (no Jinja engine): Qwen's ChatML and Llama 3's header format, in the variants
// their official templates render. Chosen by name (data.chat_template) or recognised from the Jinja text in
// a model's tokenizer_config.json; an unrecognised template is refused with a message saying to set
// data.chat_template. Output is byte-identical to transformers' apply_chat_template for system/user/assistant
// messages (tests/unit/data/chat_template_test, fixture by scripts/fixtures/make_chat_template_fixtures.py).
//
//   name       what it renders                                                     default system prompt
//   chatml     <|im_start|>{role}\n{content}<|im_end|>\n                            none
//   qwen2      ChatML                                                              "You are a helpful
//   assistant." qwen2.5    ChatML                                                              "You are Qwen,
//   created by Alibaba Cloud. ..." qwen3      ChatML; the assistant turns after the last user turn get a
//   <think> block (empty if none) llama3     <|begin_of_text|> then
//   <|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|> llama3.1   llama3 plus the system
//   header with "Cutting Knowledge Date"/"Today Date" lines, always present
//
// The system prompt option is used when the conversation has no system message of its own.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace engine::data {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// Byte range [start, end) of the rendered text.
struct TextSpan {
  size_t start = 0;
  size_t end = 0;
};

struct RenderedChat {
  std::string text;
  // What the assistant says: each assistant message's rendered content plus its end-of-turn token
  // (<|im_end|> / <|eot_id|>), so that a model trained on them learns to stop. In text order.
  std::vector<TextSpan> assistant;
};

class ChatTemplate {
 public:
  enum class Variant { kChatml, kQwen2, kQwen25, kQwen3, kLlama3, kLlama31 };

  // By name: "chatml", "qwen2", "qwen2.5", "qwen3", "llama3", "llama3.1".
  static ChatTemplate by_name(std::string_view name);
  // Recognises the family of a Jinja chat template; `where` names its file in the error.
  static ChatTemplate recognise(std::string_view jinja, const std::string& where);
  // Reads tokenizer_config.json (the file, or a model directory holding it) and recognises its template.
  static ChatTemplate from_tokenizer_config(const std::filesystem::path& path);

  // Replaces the default system prompt (used when the messages have no system message).
  void set_system_prompt(std::optional<std::string> prompt) { system_prompt_ = std::move(prompt); }
  const std::optional<std::string>& system_prompt() const noexcept { return system_prompt_; }

  // Renders the conversation; add_generation_prompt appends the assistant header to prompt a reply.
  // enable_thinking = false (qwen3 only, as its template's switch) follows that header with an empty
  // <think></think> block, so the model answers without reasoning.
  RenderedChat render(std::span<const ChatMessage> messages, bool add_generation_prompt = false,
                      bool enable_thinking = true) const;

  Variant variant() const noexcept { return variant_; }
  std::string_view name() const noexcept;
  // The token that ends a turn: "<|im_end|>" or "<|eot_id|>".
  std::string_view end_of_turn() const noexcept;

 private:
  explicit ChatTemplate(Variant v);
  Variant variant_;
  std::optional<std::string> system_prompt_;
};

}  // namespace engine::data
