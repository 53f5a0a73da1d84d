// engine/session/text_streamer.cpp: streamed pieces add up to the decoded text and never split a character.
#include "engine/session/text_streamer.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "engine/data/tokenizer.hpp"

namespace {

TEST(TextStreamer, PiecesConcatenateToTheDecodedTextWithoutBrokenCharacters) {
  const std::string dir = std::string(std::getenv("ENGINE_TEST_DATA")) + "/models/tokenizers/qwen2";
  engine::data::Tokenizer tok = engine::data::Tokenizer::from_file(dir + "/tokenizer.json");
  // characters absent from the tiny vocabulary's merges split into several byte tokens each
  const std::string text = "Héllo wörld, 你好世界! <|im_end|>";
  std::vector<int32_t> ids = tok.encode(text);
  ASSERT_GT(ids.size(), 12u);
  std::vector<std::string> pieces;
  engine::session::TextStreamer s(tok, [&](std::string_view p) { pieces.emplace_back(p); });
  for (int32_t id : ids) s.put(id);
  s.finish();
  std::string joined;
  for (const std::string& p : pieces) {
    EXPECT_EQ(p.find("\xEF\xBF\xBD"), std::string::npos) << "a piece holds a broken character";
    joined += p;
  }
  EXPECT_EQ(joined, "Héllo wörld, 你好世界! ");  // the special token is not printed
  EXPECT_EQ(s.text(), joined);
  EXPECT_GT(pieces.size(), 5u);  // it streamed, rather than printing everything at the end
}

}  // namespace
