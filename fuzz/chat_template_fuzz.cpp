// libFuzzer target: chat-template rendering. Byte 0 picks the template (by name, or byte 0 % 7 == 6:
// recognise the rest as a Jinja text and stop); byte 1 the flags (generation prompt, thinking, a system
// prompt); the rest is messages separated by '\x1e', each's first byte choosing its role. The assistant
// spans must lie inside the rendered text.
#include <vector>

#include "engine/data/chat_template.hpp"
#include "fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static const char* kNames[] = {"chatml", "qwen2", "qwen2.5", "qwen3", "llama3", "llama3.1"};
  static const char* kRoles[] = {"system", "user", "assistant", "tool"};
  const std::string_view rest = engine::fuzz::as_text(data + 2, size - 2);
  engine::fuzz::expect_clean([&] {
    if (data[0] % 7 == 6) {
      (void)engine::data::ChatTemplate::recognise(rest, "fuzz/tokenizer_config.json");
      return;
    }
    engine::data::ChatTemplate t = engine::data::ChatTemplate::by_name(kNames[data[0] % 7]);
    if (data[1] & 4) t.set_system_prompt(std::string("You are a fuzzer."));
    std::vector<engine::data::ChatMessage> messages;
    std::string_view left = rest;
    while (!left.empty()) {
      const auto [chunk, after] = engine::fuzz::split_once(left, "\x1e");
      if (!chunk.empty())
        messages.push_back({kRoles[static_cast<uint8_t>(chunk[0]) % 4], std::string(chunk.substr(1))});
      left = after;
    }
    const engine::data::RenderedChat r = t.render(messages, (data[1] & 1) != 0, (data[1] & 2) != 0);
    for (const engine::data::TextSpan& s : r.assistant) {
      if (s.start > s.end || s.end > r.text.size()) __builtin_trap();
    }
  });
  return 0;
}
