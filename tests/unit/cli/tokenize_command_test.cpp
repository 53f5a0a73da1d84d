// `engine tokenize` logic: plain, --jsonl, --decode, --add-special-tokens, and its error exits.
#include "engine/cli/tokenize_command.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "tests/unit/data/test_paths.hpp"

namespace engine::cli {
namespace {

struct Result {
  int code;
  std::string out, err;
};

Result run(std::vector<std::string> args, const std::string& input) {
  std::istringstream in(input);
  std::ostringstream out, err;
  const int code = run_tokenize_command(args, in, out, err);
  return {code, out.str(), err.str()};
}

const std::string kTok = data::testing::test_data("small_tokenizer.json").string();

TEST(TokenizeCommand, PrintsIdsAsJsonArray) {
  // Expected ids come from the Python package (small_expected.json, corpus entry "x" and "Hello, world!...").
  const Result r = run({"--tokenizer", kTok}, "x");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "[90]\n");
  const Result s = run({"--tokenizer", kTok, "--add-special-tokens"}, "x");
  EXPECT_EQ(s.out, "[0,90]\n");  // <|endoftext|> from the TemplateProcessing post-processor
}

TEST(TokenizeCommand, JsonlRoundTripsThroughDecode) {
  const Result enc = run({"--tokenizer", kTok, "--jsonl"}, "\"Hello, world!\"\n\"caf\\u00e9 <|im_end|>\"\n");
  ASSERT_EQ(enc.code, 0) << enc.err;
  EXPECT_EQ(std::count(enc.out.begin(), enc.out.end(), '\n'), 2);
  EXPECT_NE(enc.out.find(",2]"), std::string::npos) << enc.out;  // <|im_end|> is id 2
  const Result dec = run({"--tokenizer", kTok, "--jsonl", "--decode"}, enc.out);
  ASSERT_EQ(dec.code, 0) << dec.err;
  EXPECT_EQ(dec.out, "\"Hello, world!\"\n\"café <|im_end|>\"\n");
}

TEST(TokenizeCommand, DecodePlain) {
  const Result r = run({"--tokenizer=" + kTok, "--decode"}, "[90, 90]");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "xx");
}

TEST(TokenizeCommand, ErrorsAreReportedWithExitCodes) {
  EXPECT_EQ(run({}, "").code, 2);
  EXPECT_EQ(run({"--tokenizer", kTok, "--bogus"}, "").code, 2);
  const Result missing = run({"--tokenizer", "/no/such/dir"}, "x");
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("/no/such/dir"), std::string::npos);
  const Result bad_line = run({"--tokenizer", kTok, "--jsonl"}, "\"ok\"\nnot json\n");
  EXPECT_EQ(bad_line.code, 1);
  EXPECT_NE(bad_line.err.find("stdin:2"), std::string::npos) << bad_line.err;
  const Result bad_id = run({"--tokenizer", kTok, "--decode"}, "[99999]");
  EXPECT_EQ(bad_id.code, 1);
  EXPECT_NE(bad_id.err.find("99999"), std::string::npos);
}

}  // namespace
}  // namespace engine::cli
