// The UTF-8 decoding and encoding the tokenizer needs: one code point at a time (forwards and backwards),
// Unicode White_Space, and the lossy conversion that turns arbitrary bytes into valid UTF-8 (as Rust's
// String::from_utf8_lossy does). Validation itself is engine/core/utf8.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace engine::data {

// Decodes the code point starting at text[pos]; sets `length` to its byte count. A malformed or cut-off
// sequence (or pos at the end) gives U+FFFD with length 1, never a read past the text.
char32_t decode_utf8(std::string_view text, size_t pos, size_t& length) noexcept;

// Decodes the code point that ends at text[end - 1]; sets `length` to its byte count (U+FFFD and 1 when the
// bytes before `end` are not one whole sequence, or end is 0).
char32_t decode_utf8_before(std::string_view text, size_t end, size_t& length) noexcept;

// Appends the UTF-8 encoding of `cp` to `out`.
void append_utf8(std::string& out, char32_t cp);

// Unicode White_Space (what Rust's char::is_whitespace tests).
bool is_unicode_whitespace(char32_t cp) noexcept;

// Valid UTF-8 from arbitrary bytes: each maximal invalid subsequence becomes U+FFFD.
std::string utf8_lossy(std::string_view bytes);

}  // namespace engine::data
