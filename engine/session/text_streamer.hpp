// TextStreamer: turns generated token ids into text as they arrive, for printing while generating.
//
// A byte-level BPE token can end in the middle of a UTF-8 character, so the text of the ids so far is decoded
// as a whole and only the part that is final is emitted: text ending in U+FFFD (an incomplete character) is
// held back until the next token completes it, as transformers' TextStreamer does. Special tokens
// (<|im_end|>,
// <|eot_id|>) are not printed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/data/tokenizer.hpp"

namespace engine::session {

class TextStreamer {
 public:
  // sink receives each new piece of text (never an incomplete UTF-8 sequence, except at finish()).
  TextStreamer(const data::Tokenizer& tokenizer, std::function<void(std::string_view)> sink);
  void put(int32_t id);
  // Emits whatever is held back (replacement characters included).
  void finish();
  // Everything emitted so far.
  const std::string& text() const noexcept { return emitted_; }

 private:
  const data::Tokenizer* tokenizer_;
  std::function<void(std::string_view)> sink_;
  std::vector<int32_t> ids_;
  std::string emitted_;
};

}  // namespace engine::session
