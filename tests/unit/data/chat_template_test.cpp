// Chat templates against transformers' apply_chat_template (tests/data/data/chat_templates.json, made by
// scripts/fixtures/make_chat_template_fixtures.py): recognition of each official template text, byte-equal
// rendering, and the assistant spans the loss mask trains on.
#include "engine/data/chat_template.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/core/error.hpp"
#include "engine/data/utf8_codec.hpp"
#include "tests/unit/data/test_paths.hpp"

namespace engine::data {
namespace {

using testing::read_text;
using testing::test_data;

std::vector<ChatMessage> to_messages(const nlohmann::json& j) {
  std::vector<ChatMessage> out;
  for (const auto& m : j)
    out.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  return out;
}

// Regression (fuzz/chat_template_fuzz.cpp): a message ending in a cut-off UTF-8 sequence (a --prompt from the
// command line is not validated) made trimming read past the string. It renders, bytes kept as they are.
TEST(ChatTemplate, MalformedUtf8InAMessageIsNeverReadPastItsEnd) {
  size_t n = 0;
  EXPECT_EQ(decode_utf8("a\xf0", 1, n), 0xFFFDu);
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(decode_utf8("\xe6\x97", 0, n), 0xFFFDu);
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(decode_utf8("\xe6\x97\xa5", 0, n), 0x65E5u);
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(decode_utf8_before("x\x97\xa5", 3, n), 0xFFFDu);  // continuation bytes without their lead
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(decode_utf8_before("\xe6\x97\xa5", 3, n), 0x65E5u);
  EXPECT_EQ(n, 3u);
  for (const char* name : {"chatml", "llama3.1", "qwen3"}) {
    const ChatTemplate t = ChatTemplate::by_name(name);
    const std::vector<ChatMessage> messages{{"user", "\xff\xff hi \xf0"}, {"assistant", "\x97\x97 "}};
    const RenderedChat r = t.render(messages, true);
    EXPECT_NE(r.text.find("\xff\xff hi \xf0"), std::string::npos) << name;
  }
}

TEST(ChatTemplate, MatchesTransformersOnCommittedExamples) {
  const auto fixture = nlohmann::json::parse(read_text(test_data("chat_templates.json")));
  size_t checked = 0;
  for (const auto& c : fixture["cases"]) {
    const std::string name = c["template"].get<std::string>();
    const ChatTemplate tmpl = ChatTemplate::recognise(fixture["templates"][name].get<std::string>(), name);
    ASSERT_EQ(tmpl.name(), name);
    const auto messages = to_messages(c["messages"]);
    const RenderedChat r =
        tmpl.render(messages, c["add_generation_prompt"].get<bool>(), c.value("enable_thinking", true));
    EXPECT_EQ(r.text, c["text"].get<std::string>())
        << "template " << name << ", case " << c["messages"].dump();
    // One span per assistant message, each ending with the end-of-turn token and holding the reply's words.
    std::vector<const ChatMessage*> replies;
    for (const auto& m : messages) {
      if (m.role == "assistant") replies.push_back(&m);
    }
    ASSERT_EQ(r.assistant.size(), replies.size());
    for (size_t k = 0; k < replies.size(); ++k) {
      const std::string span = r.text.substr(r.assistant[k].start, r.assistant[k].end - r.assistant[k].start);
      EXPECT_TRUE(span.ends_with(tmpl.end_of_turn())) << span;
      const std::string& content = replies[k]->content;
      const std::string tail =
          content.substr(content.rfind('>') == std::string::npos ? 0 : content.rfind('>') + 1);
      const auto first = tail.find_first_not_of(" \n"), last = tail.find_last_not_of(" \n");
      EXPECT_NE(span.find(tail.substr(first, last - first + 1)), std::string::npos) << span;
      EXPECT_EQ(span.find("<|im_start|>"), std::string::npos) << span;  // no prompt text inside
      EXPECT_EQ(span.find("<|start_header_id|>"), std::string::npos) << span;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 41u);
}

TEST(ChatTemplate, SystemPromptOptionAppliesWhenConversationHasNone) {
  ChatTemplate t = ChatTemplate::by_name("chatml");
  const std::vector<ChatMessage> chat = {{"user", "hi"}, {"assistant", "yo"}};
  EXPECT_EQ(t.render(chat).text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n");
  t.set_system_prompt("Be brief.");
  EXPECT_EQ(
      t.render(chat).text,
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo"
      "<|im_end|>\n");
  const std::vector<ChatMessage> with_system = {{"system", "Own."}, {"user", "hi"}};
  EXPECT_EQ(t.render(with_system).text,
            "<|im_start|>system\nOwn.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n");
  // Qwen2.5's default, as its template inserts it.
  EXPECT_EQ(
      ChatTemplate::by_name("qwen2.5").render(std::vector<ChatMessage>{{"user", "x"}}).text,
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
      "<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplate, AssistantSpanCoversReplyAndEndOfTurnOnly) {
  const auto t = ChatTemplate::by_name("llama3");
  const RenderedChat r = t.render(std::vector<ChatMessage>{{"user", "q"}, {"assistant", " a "}});
  ASSERT_EQ(r.assistant.size(), 1u);
  EXPECT_EQ(r.text.substr(r.assistant[0].start, r.assistant[0].end - r.assistant[0].start), "a<|eot_id|>");
  const auto c =
      ChatTemplate::by_name("chatml").render(std::vector<ChatMessage>{{"user", "q"}, {"assistant", "a"}});
  EXPECT_EQ(c.text.substr(c.assistant[0].start, c.assistant[0].end - c.assistant[0].start), "a<|im_end|>");
}

TEST(ChatTemplate, UnknownTemplateTellsToSetDataChatTemplate) {
  try {
    (void)ChatTemplate::recognise("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}",
                                  "cfg.json");
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("set data.chat_template"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)ChatTemplate::by_name("mistral"), Error);
  EXPECT_THROW((void)ChatTemplate::by_name("chatml").render(std::vector<ChatMessage>{{"tool", "x"}}), Error);
}

TEST(ChatTemplate, RecognisesTheRealQwenTokenizerConfig) {
  const auto dir = testing::qwen_tokenizer_dir();
  if (!std::filesystem::exists(dir / "tokenizer_config.json")) GTEST_SKIP() << "absent: " << dir;
  EXPECT_EQ(ChatTemplate::from_tokenizer_config(dir).name(), "qwen3");
}

}  // namespace
}  // namespace engine::data
