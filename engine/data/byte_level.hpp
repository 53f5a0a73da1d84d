// GPT-2's byte-level alphabet: every byte maps to one printable code point (printable Latin-1 bytes to
// themselves, the others to U+0100 and up), so that vocabularies of byte strings can be stored as text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace engine::data {

// The code point that stands for `byte`.
char32_t byte_to_char(uint8_t byte) noexcept;

// The byte a code point stands for, if it is one of the 256 alphabet characters.
std::optional<uint8_t> char_to_byte(char32_t cp) noexcept;

// Maps raw bytes to their alphabet string (UTF-8).
std::string bytes_to_alphabet(std::string_view bytes);

// Maps an alphabet string back to raw bytes; nullopt when it contains a character outside the alphabet.
std::optional<std::string> alphabet_to_bytes(std::string_view text);

}  // namespace engine::data
