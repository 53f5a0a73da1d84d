// Loss masks: only the assistant's reply and its end-of-turn token are targets (train_on_prompt = false),
// labels are shifted (labels[t] = ids[t + 1]), ids equal tokenizing the rendered conversation.
#include "engine/data/tokenized_sample.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "engine/core/error.hpp"
#include "tests/unit/data/test_paths.hpp"

namespace engine::data {
namespace {

using testing::test_data;

// The real Qwen tokenizer, loaded once for the whole binary (11 MB); null when ../shared lacks it.
const Tokenizer* qwen_tokenizer() {
  static const std::unique_ptr<Tokenizer> tokenizer = []() -> std::unique_ptr<Tokenizer> {
    const auto dir = testing::qwen_tokenizer_dir();
    if (!std::filesystem::exists(dir / "tokenizer.json")) return nullptr;
    return std::make_unique<Tokenizer>(Tokenizer::from_file(dir));
  }();
  return tokenizer.get();
}

class TokenizedSampleTest : public ::testing::Test {
 protected:
  Tokenizer tok = Tokenizer::from_file(test_data("small_tokenizer.json"));
  ChatTemplate chat = ChatTemplate::by_name("chatml");
  Example two_turns() {
    Example ex;
    ex.where = "t:1";
    ex.messages = {{"system", "Be brief."},
                   {"user", "Hello world"},
                   {"assistant", "The fox."},
                   {"user", "More?"},
                   {"assistant", "\n\nNo."}};
    return ex;
  }
};

// The decoded targets, one string per run of consecutive trained positions.
std::vector<std::string> trained_runs(const Tokenizer& tok, const TokenizedSample& s) {
  std::vector<std::string> runs;
  std::vector<int32_t> run;
  for (size_t t = 0; t < s.labels.size(); ++t) {
    if (s.labels[t] != kIgnoreIndex) {
      EXPECT_EQ(s.labels[t], s.ids[t + 1]) << "labels must be shifted ids at " << t;
      run.push_back(s.labels[t]);
    } else if (!run.empty()) {
      runs.push_back(tok.decode(run));
      run.clear();
    }
  }
  if (!run.empty()) runs.push_back(tok.decode(run));
  return runs;
}

TEST_F(TokenizedSampleTest, OnlyAssistantRepliesAndEndOfTurnAreTrained) {
  const Example ex = two_turns();
  const TokenizedSample s = tokenize_example(ex, tok, chat, SampleOptions{});
  EXPECT_EQ(s.ids, tok.encode(chat.render(ex.messages).text));
  ASSERT_EQ(s.labels.size(), s.ids.size());
  EXPECT_EQ(s.labels.back(), kIgnoreIndex);
  // The second reply starts with "\n\n", in one pre-token with the prompt's "\n" after "assistant". This
  // small vocabulary splits "\n\n\n" as "\n" + "\n\n": the second token starts inside the reply and is
  // trained. (Qwen's vocabulary has "\n\n\n" as one token, which starts in the prompt: see
  // RealQwenTokenizerMasksImEnd.)
  EXPECT_EQ(trained_runs(tok, s), (std::vector<std::string>{"The fox.<|im_end|>", "\n\nNo.<|im_end|>"}));
}

TEST_F(TokenizedSampleTest, TrainOnPromptTrainsEverythingAfterTheFirstToken) {
  SampleOptions options;
  options.train_on_prompt = true;
  const TokenizedSample s = tokenize_example(two_turns(), tok, chat, options);
  EXPECT_EQ(count_label_tokens(s.labels), static_cast<int64_t>(s.ids.size()) - 1);
}

TEST_F(TokenizedSampleTest, PlainTextTrainsAllAndAppendsEos) {
  Example ex;
  ex.is_text = true;
  ex.text = "Hello world";
  SampleOptions options;
  options.text_eos_token = "<|endoftext|>";
  const TokenizedSample s = tokenize_example(ex, tok, chat, options);
  EXPECT_EQ(s.ids.back(), 0);
  EXPECT_EQ(count_label_tokens(s.labels), static_cast<int64_t>(s.ids.size()) - 1);
  options.text_eos_token = "<nope>";
  EXPECT_THROW((void)tokenize_example(ex, tok, chat, options), Error);
}

TEST_F(TokenizedSampleTest, TokensAreKeptAndAllTrainedWithoutEos) {
  Example ex;
  ex.is_tokens = true;
  ex.ids = {7, 3, 9, 1};
  SampleOptions options;
  options.text_eos_token = "<|endoftext|>";  // plain text only: token ids are used as they are
  const TokenizedSample s = tokenize_example(ex, tok, chat, options);
  EXPECT_EQ(s.ids, ex.ids);
  EXPECT_EQ(s.labels, (std::vector<int32_t>{3, 9, 1, kIgnoreIndex}));
}

TEST_F(TokenizedSampleTest, Llama3TemplateTrainsEotId) {
  // The small tokenizer lacks <|eot_id|> as a special token, so it is spelled in pieces; the trained run
  // must still cover the reply and the whole end-of-turn marker.
  Example ex;
  ex.where = "t:2";
  ex.messages = {{"user", "q"}, {"assistant", "  Hello world "}};
  const TokenizedSample s = tokenize_example(ex, tok, ChatTemplate::by_name("llama3"), SampleOptions{});
  const auto runs = trained_runs(tok, s);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0], "Hello world<|eot_id|>");
}

TEST_F(TokenizedSampleTest, RealQwenTokenizerMasksImEnd) {
  if (qwen_tokenizer() == nullptr) GTEST_SKIP() << "absent: " << testing::qwen_tokenizer_dir();
  const Tokenizer& qwen = *qwen_tokenizer();
  const TokenizedSample s = tokenize_example(two_turns(), qwen, chat, SampleOptions{});
  EXPECT_EQ(trained_runs(qwen, s), (std::vector<std::string>{"The fox.<|im_end|>", "No.<|im_end|>"}));
  // The id after each trained <|im_end|> target (the "\n") is not a target.
  for (size_t t = 0; t + 1 < s.labels.size(); ++t) {
    if (s.labels[t] == 151645) {
      EXPECT_EQ(s.labels[t + 1], kIgnoreIndex);
    }
  }
}

TEST_F(TokenizedSampleTest, RealQwenIdsEqualTransformersApplyChatTemplate) {
  // tests/data/data/chat_templates.json holds transformers' apply_chat_template(tokenize=True) ids for every
  // ChatML case; the engine's tokenized sample must have exactly those ids.
  if (qwen_tokenizer() == nullptr) GTEST_SKIP() << "absent: " << testing::qwen_tokenizer_dir();
  const Tokenizer& qwen = *qwen_tokenizer();
  const auto fixture = nlohmann::json::parse(testing::read_text(test_data("chat_templates.json")));
  size_t checked = 0;
  for (const auto& c : fixture["cases"]) {
    if (!c.contains("qwen_ids") || c["add_generation_prompt"].get<bool>()) continue;
    const std::string name = c["template"].get<std::string>();
    const ChatTemplate tmpl = ChatTemplate::recognise(fixture["templates"][name].get<std::string>(), name);
    Example ex;
    ex.where = name;
    for (const auto& m : c["messages"])
      ex.messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    const TokenizedSample s = tokenize_example(ex, qwen, tmpl, SampleOptions{});
    EXPECT_EQ(s.ids, c["qwen_ids"].get<std::vector<int32_t>>()) << name << " " << c["messages"].dump();
    ++checked;
  }
  EXPECT_EQ(checked, 21u);
}

TEST_F(TokenizedSampleTest, NothingToTrainIsAnError) {
  Example ex;
  ex.where = "f.jsonl:9";
  ex.messages = {{"user", "only a question"}};
  try {
    (void)tokenize_example(ex, tok, chat, SampleOptions{});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "f.jsonl:9: the example has no token to train on");
  }
}

}  // namespace
}  // namespace engine::data
