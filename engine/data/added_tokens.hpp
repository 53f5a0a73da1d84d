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

  bool has_normalized() const noexcept { return !normalized_.empty(); }

  // Splits `text` on the tokens with normalized == `normalized_pass`; appends segments covering the text.
  void split(std::string_view text, bool normalized_pass, std::vector<TextSegment>& out) const;

  const AddedToken* find(int32_t id) const;
  const AddedToken* find(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const noexcept { return tokens_; }

 private:
  // A byte trie of the token texts of one pass: walking it from a position finds the longest token that
  // starts there in O(its length), however many tokens there are (Llama 3 has 256 reserved ones).
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // (byte, node index)
    int32_t token = -1;                                 // index into tokens_ of the token ending here
  };
  struct Set {
    std::vector<Node> nodes{Node{}};
    std::array<bool, 256> first_byte{};
    bool empty() const { return nodes.size() == 1; }
    void insert(const std::string& text, int32_t token);
    // Length of the longest token starting at text[pos] and that token's index, or {0, -1}.
    std::pair<size_t, int32_t> longest(std::string_view text, size_t pos) const;
  };
  std::vector<AddedToken> tokens_;
  Set raw_, normalized_;
};

}  // namespace engine::data
