// UTF-8 validation with the rules of Rust's str::from_utf8 (what the safetensors reference and the Hugging
// Face tokenizers apply): overlong encodings, surrogates and code points above U+10FFFF are invalid. The one
// copy for every layer (the safetensors reader and writer, the tokenizer).
#pragma once

#include <cstddef>
#include <string_view>

namespace engine {

// Length (1 to 4) of the valid UTF-8 sequence that starts at text[pos], or 0 when none starts there; then
// `invalid_length` is the length of the maximal invalid subpart (at least 1), the unit that a lossy decoder
// replaces with one U+FFFD. pos < text.size().
size_t utf8_sequence_length(std::string_view text, size_t pos, size_t& invalid_length) noexcept;

// Byte offset of the first invalid UTF-8 sequence in `text`, or text.size() when it is all valid.
size_t first_invalid_utf8(std::string_view text) noexcept;

inline bool is_valid_utf8(std::string_view text) noexcept { return first_invalid_utf8(text) == text.size(); }

}  // namespace engine
