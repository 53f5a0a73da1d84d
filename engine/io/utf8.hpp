// UTF-8 validation with the rules of Rust's str::from_utf8 (what the safetensors reference applies).
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace engine::io {

// Length of the longest valid UTF-8 prefix of `bytes`: equal to bytes.size() exactly when all of it is
// valid. Overlong encodings, surrogates and code points above U+10FFFF are invalid.
size_t valid_utf8_prefix(std::span<const std::byte> bytes) noexcept;

inline bool is_valid_utf8(std::string_view text) noexcept {
  return valid_utf8_prefix(std::span<const std::byte>(reinterpret_cast<const std::byte*>(text.data()),
                                                      text.size())) == text.size();
}

}  // namespace engine::io
