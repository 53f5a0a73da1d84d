// Tokenizer parity with the Python `tokenizers` package: ids, ids with special tokens, and decodes of a
// committed corpus (scripts/fixtures/make_tokenizer_fixtures.py), for a small trained tokenizer and for the
// real Qwen tokenizer (loaded once for the whole binary; skipped when ../shared lacks it).
#include "engine/data/tokenizer.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/core/error.hpp"
#include "tests/unit/data/test_paths.hpp"

namespace engine::data {
namespace {

using testing::qwen_tokenizer_dir;
using testing::read_text;
using testing::test_data;

nlohmann::json load_json(const std::filesystem::path& path) { return nlohmann::json::parse(read_text(path)); }

void expect_parity(const Tokenizer& tok, const nlohmann::json& corpus, const nlohmann::json& expected) {
  ASSERT_EQ(corpus.size(), expected["ids"].size());
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string text = corpus[i].get<std::string>();
    SCOPED_TRACE("corpus[" + std::to_string(i) + "] = " + text.substr(0, 80));
    const auto ids = tok.encode(text, false);
    EXPECT_EQ(ids, expected["ids"][i].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.encode(text, true), expected["ids_special"][i].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.decode(ids, false), expected["decoded"][i].get<std::string>());
    EXPECT_EQ(tok.decode(ids, true), expected["decoded_skip_special"][i].get<std::string>());
    const Encoding enc = tok.encode_with_offsets(text, false);
    EXPECT_EQ(enc.ids, ids);
    ASSERT_EQ(enc.starts.size(), ids.size());
    for (size_t k = 1; k < enc.starts.size(); ++k) EXPECT_LE(enc.starts[k - 1], enc.starts[k]);
  }
}

TEST(Tokenizer, SmallTokenizerMatchesPythonTokenizers) {
  const Tokenizer tok = Tokenizer::from_file(test_data("small_tokenizer.json"));
  expect_parity(tok, load_json(test_data("tokenizer_corpus.json")),
                load_json(test_data("small_expected.json")));
}

TEST(Tokenizer, Llama3StyleTokenizerMatchesPythonTokenizers) {
  // Llama 3's layout: \p{N}{1,3} regex, no normalizer, ignore_merges, <|begin_of_text|> post-processor.
  const Tokenizer tok = Tokenizer::from_file(test_data("llama3_style_tokenizer.json"));
  expect_parity(tok, load_json(test_data("tokenizer_corpus.json")),
                load_json(test_data("llama3_style_expected.json")));
}

TEST(Tokenizer, Gpt2StyleTokenizerMatchesPythonTokenizers) {
  // ByteLevel(add_prefix_space = true, use_regex = true) as the only pre-tokenizer.
  const Tokenizer tok = Tokenizer::from_file(test_data("gpt2_style_tokenizer.json"));
  expect_parity(tok, load_json(test_data("tokenizer_corpus.json")),
                load_json(test_data("gpt2_style_expected.json")));
}

TEST(Tokenizer, Llama2StyleTokenizersMatchPythonTokenizers) {
  // SentencePiece-style BPE: byte fallback (<0xXX>), fuse_unk, <s> post-processor; the legacy Prepend/Replace
  // normalizers, or a Metaspace pre-tokenizer (prepend first without split, always with split); their
  // decoders.
  const auto corpus = load_json(test_data("tokenizer_corpus.json"));
  for (const std::string name : {"llama2_legacy", "llama2_metaspace_first", "llama2_metaspace_split"}) {
    SCOPED_TRACE(name);
    const Tokenizer tok = Tokenizer::from_file(test_data(name + "_tokenizer.json"));
    expect_parity(tok, corpus, load_json(test_data(name + "_expected.json")));
  }
}

TEST(Tokenizer, SplitBehaviorsDigitsAndUnicodeFormsMatchPythonTokenizers) {
  // Split with Removed (NFKC, Digits individual), MergedWithPrevious (NFD), MergedWithNext on a String
  // pattern (Digits contiguous), Contiguous (NFKD), and Isolated with invert.
  const auto corpus = load_json(test_data("tokenizer_corpus.json"));
  for (const std::string variant : {"removed", "previous", "next", "contiguous", "invert"}) {
    SCOPED_TRACE(variant);
    const Tokenizer tok = Tokenizer::from_file(test_data("split_" + variant + "_tokenizer.json"));
    expect_parity(tok, corpus, load_json(test_data("split_" + variant + "_expected.json")));
  }
}

TEST(Tokenizer, ConcurrentEncodingGivesTheSameIds) {
  // Threads share the word cache (lock-free): each thread's ids must equal the expected ones.
  const Tokenizer tok = Tokenizer::from_file(test_data("small_tokenizer.json"));
  const auto corpus = load_json(test_data("tokenizer_corpus.json"));
  const auto expected = load_json(test_data("small_expected.json"));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < 4; ++t) {
    pool.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < corpus.size(); ++i) {
          const size_t k = (i + static_cast<size_t>(t) * 7) % corpus.size();  // different orders per thread
          if (tok.encode(corpus[k].get<std::string>()) != expected["ids"][k].get<std::vector<int32_t>>())
            ++mismatches;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(Tokenizer, SmallTokenizerVocabularyQueries) {
  const Tokenizer tok = Tokenizer::from_file(test_data("small_tokenizer.json"));
  EXPECT_EQ(tok.token_to_id("<|im_end|>"), 2);
  EXPECT_TRUE(tok.is_special(2));
  EXPECT_FALSE(tok.is_special(385));  // <mask> is added but not special
  EXPECT_EQ(tok.id_to_token(385), "<mask>");
  EXPECT_EQ(tok.vocab_size(), 388u);
  EXPECT_FALSE(tok.token_to_id("no such token").has_value());
}

TEST(Tokenizer, OffsetsPointAtTokenStarts) {
  const Tokenizer tok = Tokenizer::from_file(test_data("small_tokenizer.json"));
  const std::string text = "Hello world<|im_end|>\nok";
  const Encoding enc = tok.encode_with_offsets(text);
  ASSERT_FALSE(enc.ids.empty());
  EXPECT_EQ(enc.starts[0], 0u);
  bool saw_special = false;
  for (size_t k = 0; k < enc.ids.size(); ++k) {
    if (enc.ids[k] == 2) {
      EXPECT_EQ(enc.starts[k], text.find("<|im_end|>"));
      saw_special = true;
    }
    // Decoding the token alone gives the text at its offset.
    const std::string piece = tok.decode(std::vector<int32_t>{enc.ids[k]});
    EXPECT_EQ(text.substr(enc.starts[k], piece.size()), piece) << "token " << k;
  }
  EXPECT_TRUE(saw_special);
}

TEST(Tokenizer, OffsetsMapThroughNormalization) {
  const Tokenizer tok = Tokenizer::from_file(test_data("small_tokenizer.json"));
  const std::string text = "cafe\u0301 x";  // NFC turns e + U+0301 into U+00E9: 1 byte shorter
  const Encoding enc = tok.encode_with_offsets(text);
  ASSERT_GE(enc.ids.size(), 2u);
  EXPECT_EQ(tok.decode(enc.ids), "caf\u00e9 x");
  // The last token (" x" or "x") starts at or after the space, in the original text's bytes.
  EXPECT_GE(enc.starts.back(), text.find(' '));
  EXPECT_LT(enc.starts.back(), text.size());
}

TEST(Tokenizer, RejectsInvalidUtf8WithOffset) {
  const Tokenizer tok = Tokenizer::from_file(test_data("small_tokenizer.json"));
  try {
    (void)tok.encode(std::string("ab\xff", 3));
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8 at byte 2"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, RefusesUnknownComponentsByName) {
  const auto refuse = [](const std::string& json, const std::string& needle) {
    try {
      (void)Tokenizer::from_json_text(json, "t.json");
      ADD_FAILURE() << "expected engine::Error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const std::string model = R"("model": {"type": "BPE", "vocab": {"a": 0}, "merges": []})";
  refuse(R"({"model": {"type": "WordPiece", "vocab": {}}})", "model type \"WordPiece\"");
  refuse("{" + model + R"(, "normalizer": {"type": "BertNormalizer"}})",
         "normalizer type \"BertNormalizer\"");
  refuse("{" + model + R"(, "pre_tokenizer": {"type": "Whitespace"}})", "pre-tokenizer type \"Whitespace\"");
  refuse("{" + model + R"(, "decoder": {"type": "WordPiece"}})", "decoder type \"WordPiece\"");
  refuse("{" + model + R"(, "post_processor": {"type": "BertProcessing"}})",
         "post-processor type \"BertProcessing\"");
  refuse("{not json", "not valid JSON");
}

TEST(Tokenizer, MissingFileSaysWhatToGive) {
  try {
    (void)Tokenizer::from_file("/nonexistent/model");
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model"), std::string::npos);
    EXPECT_EQ(e.status(), ENG_ERR_IO);
  }
}

class QwenTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(qwen_tokenizer_dir() / "tokenizer.json")) {
      tokenizer_ = new Tokenizer(Tokenizer::from_file(qwen_tokenizer_dir()));
    }
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }
  void SetUp() override {
    if (tokenizer_ == nullptr) GTEST_SKIP() << "real Qwen tokenizer absent at " << qwen_tokenizer_dir();
  }
  static Tokenizer* tokenizer_;
};
Tokenizer* QwenTokenizer::tokenizer_ = nullptr;

TEST_F(QwenTokenizer, MatchesPythonTokenizers) {
  expect_parity(*tokenizer_, load_json(test_data("tokenizer_corpus.json")),
                load_json(test_data("qwen_expected.json")));
}

TEST_F(QwenTokenizer, SpecialTokenIds) {
  EXPECT_EQ(tokenizer_->token_to_id("<|endoftext|>"), 151643);
  EXPECT_EQ(tokenizer_->token_to_id("<|im_start|>"), 151644);
  EXPECT_EQ(tokenizer_->token_to_id("<|im_end|>"), 151645);
  EXPECT_EQ(tokenizer_->encode("<|im_end|>"), std::vector<int32_t>{151645});
}

TEST_F(QwenTokenizer, LongWhitespaceRunAndLongWord) {
  // Long words take the heap path of the merge loop, long runs need a bigger regex JIT stack.
  const std::string spaces(20000, ' ');
  const auto ids = tokenizer_->encode(spaces + "x");
  EXPECT_EQ(tokenizer_->decode(ids), spaces + "x");
  const std::string word(5000, 'z');
  EXPECT_EQ(tokenizer_->decode(tokenizer_->encode(word)), word);
}

}  // namespace
}  // namespace engine::data
