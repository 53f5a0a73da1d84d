// Dataset readers: the three forms, ShareGPT, field mapping, and the documented messages for malformed
// records (file:line, skipped and counted, or fatal).
#include "engine/data/dataset.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "engine/core/error.hpp"
#include "tests/unit/data/test_paths.hpp"

namespace engine::data {
namespace {

using testing::test_data;

TEST(Dataset, ReadsMessagesAndShareGptAndSkipsMalformedLinesWithMessages) {
  const auto path = test_data("chat.jsonl");
  const Dataset d = read_dataset(path, DatasetOptions{});
  ASSERT_EQ(d.examples.size(), 3u);
  EXPECT_EQ(d.skipped, 5u);
  EXPECT_EQ(d.examples[0].messages.size(), 2u);
  EXPECT_EQ(d.examples[0].messages[1].role, "assistant");
  EXPECT_EQ(d.examples[0].where, path.string() + ":1");
  // ShareGPT: from/value, human -> user, gpt -> assistant.
  ASSERT_EQ(d.examples[1].messages.size(), 3u);
  EXPECT_EQ(d.examples[1].messages[0].role, "system");
  EXPECT_EQ(d.examples[1].messages[1].role, "user");
  EXPECT_EQ(d.examples[1].messages[2].role, "assistant");
  EXPECT_EQ(d.examples[1].messages[2].content, "Hello.");
  EXPECT_EQ(d.examples[2].where, path.string() + ":9");  // the blank line 4 still counts
  const std::string f = path.string();
  const std::vector<std::string> expected_prefixes = {
      f + ":3: not valid JSON: parse error",
      f + ":5: message 0: role \"narrator\" is not one of system, user, assistant (ShareGPT: human, gpt)",
      f + ":6: no assistant message to train on",
      f + ":7: expected a JSON object, got array",
      f + ":8: record matches no known form (alpaca: instruction/output; messages; text; tokens: input_ids)",
  };
  ASSERT_EQ(d.errors.size(), expected_prefixes.size());
  for (size_t i = 0; i < expected_prefixes.size(); ++i) {
    EXPECT_EQ(d.errors[i].substr(0, expected_prefixes[i].size()), expected_prefixes[i]) << d.errors[i];
  }
}

TEST(Dataset, FailModeThrowsTheFirstMessage) {
  DatasetOptions options;
  options.on_error = OnError::kFail;
  try {
    (void)read_dataset(test_data("chat.jsonl"), options);
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("chat.jsonl:3: not valid JSON"), std::string::npos) << e.what();
    // ...and says how to get past it.
    EXPECT_NE(std::string(e.what()).find("set data.on_error = \"skip\""), std::string::npos) << e.what();
  }
}

TEST(Dataset, ReadsAlpacaArrayWithLineNumbers) {
  const auto path = test_data("alpaca.json");
  const Dataset d = read_dataset(path, DatasetOptions{});
  ASSERT_EQ(d.examples.size(), 3u);
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_EQ(d.errors[0], path.string() + ":4: field \"output\" must be a string");
  EXPECT_EQ(d.examples[0].messages[0].content, "Add the numbers.\n\n2 and 3");
  EXPECT_EQ(d.examples[0].messages[1].content, "5");
  EXPECT_EQ(d.examples[1].messages[0].content, "Say hi.");
  ASSERT_EQ(d.examples[2].messages.size(), 3u);  // system field becomes a system message
  EXPECT_EQ(d.examples[2].messages[0].content, "You are a butler.");
  EXPECT_EQ(d.examples[2].where, path.string() + ":5");
}

TEST(Dataset, TextFormAndFieldMapping) {
  const Dataset d = read_dataset(test_data("text.jsonl"), DatasetOptions{});
  ASSERT_EQ(d.examples.size(), 2u);
  EXPECT_TRUE(d.examples[0].is_text);
  EXPECT_EQ(d.examples[1].text, "Hello world.");

  DatasetOptions mapped;
  mapped.format = DatasetFormat::kAlpaca;
  mapped.fields.instruction = "prompt";
  mapped.fields.output = "completion";
  const Example ex = parse_record(R"({"prompt": "p", "completion": "c"})", mapped, "f:1");
  ASSERT_EQ(ex.messages.size(), 2u);
  EXPECT_EQ(ex.messages[0].content, "p");
  EXPECT_EQ(ex.messages[1].content, "c");
  try {
    (void)parse_record(R"({"instruction": "p"})", mapped, "f:2");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "f:2: no \"prompt\" field (alpaca form; map other names with data.fields)");
  }
}

TEST(Dataset, TokensFormTakesIdsAsTheyAreAndNamesBadOnes) {
  const Example ex = parse_record(R"({"input_ids": [5, 0, 151643]})", DatasetOptions{}, "f:1");  // auto
  EXPECT_TRUE(ex.is_tokens);
  EXPECT_EQ(ex.ids, (std::vector<int32_t>{5, 0, 151643}));
  DatasetOptions tokens;
  tokens.format = DatasetFormat::kTokens;
  for (const char* bad : {R"({"input_ids": []})", R"({"text": "x"})", R"({"input_ids": [1, -2]})",
                          R"({"input_ids": [1, 2.5]})", R"({"input_ids": [3000000000]})"}) {
    try {
      (void)parse_record(bad, tokens, "f:2");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("f:2: "), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(parse_dataset_format("tokens"), DatasetFormat::kTokens);
}

TEST(Dataset, ByteOrderMarkAndCrLfAreAccepted) {
  const auto path = std::filesystem::temp_directory_path() / "engine_dataset_bom_test.jsonl";
  std::ofstream(path, std::ios::binary) << "\xEF\xBB\xBF{\"text\": \"a\"}\r\n\r\n{\"text\": \"b\"}\r\n";
  const Dataset d = read_dataset(path, DatasetOptions{});
  std::filesystem::remove(path);
  ASSERT_EQ(d.examples.size(), 2u);
  EXPECT_EQ(d.skipped, 0u);
  EXPECT_EQ(d.examples[0].text, "a");
  EXPECT_EQ(d.examples[1].where, path.string() + ":3");
}

TEST(Dataset, OptionNamesAreParsedOrRefused) {
  EXPECT_EQ(parse_dataset_format("sharegpt"), DatasetFormat::kMessages);
  EXPECT_EQ(parse_on_error("fail"), OnError::kFail);
  EXPECT_THROW((void)parse_dataset_format("csv"), Error);
  EXPECT_THROW((void)parse_on_error("ignore"), Error);
  EXPECT_THROW((void)read_dataset("/no/such/file.jsonl", DatasetOptions{}), Error);
}

// Found by fuzz_dataset_line (fuzz/corpus/dataset_line/crash-number-overflow): a number past a double's range
// made nlohmann throw out_of_range, which only parse_error was caught for: an uncaught exception.
TEST(Dataset, ANumberPastADoublesRangeIsNamedNotThrownThrough) {
  for (const char* line : {"1e999", R"({"text": "a", "n": 1e999})", R"({"text": -1e400})"}) {
    try {
      (void)parse_record(line, DatasetOptions{}, "f:7");
      ADD_FAILURE() << line << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("f:7: not valid JSON: "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("number overflow"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace engine::data
