// Added tokens of a tokenizer.json (special tokens like <|im_end|> and user-added ones). They are matched in
// the text before the pre-tokenizer runs, leftmost-longest: tokens with normalized=false on the raw text,
// those with normalized=true on the normalized text. lstrip/rstrip make a match swallow the whitespace
// beside it; single_word makes a token match only between non-word characters (as HF does).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/data/normalizer.hpp"

namespace engine::data {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool single_word = false;
};

// A span of text: either plain text (id < 0) or an added token that covers it.
struct TextSegment {
  uint32_t start = 0;
  uint32_t end = 0;
  int32_t id = -1;
};

class AddedVocabulary {
 public:
  // Adds a token; a normalized token is matched by its normalized content.
  void add(AddedToken token, const Normalizer& normalizer);

  bool has_normalized() const noexcept { return !normalized_.matchers.empty(); }

  // Splits `text` on the tokens with normalized == `normalized_pass`; appends segments covering the text.
  void split(std::string_view text, bool normalized_pass, std::vector<TextSegment>& out) const;

  const AddedToken* find(int32_t id) const;
  const AddedToken* find(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const noexcept { return tokens_; }

 private:
  struct Matcher {
    std::string text;  // what to look for
    size_t token;      // index into tokens_
  };
  struct Set {
    std::vector<Matcher> matchers;  // longest first
    std::array<bool, 256> first_byte{};
  };
  std::vector<AddedToken> tokens_;
  Set raw_, normalized_;
};

}  // namespace engine::data
