#include "engine/data/byte_level.hpp"

#include <array>

#include "engine/core/utf8.hpp"
#include "engine/data/utf8_codec.hpp"

namespace engine::data {
namespace {

struct Alphabet {
  std::array<char32_t, 256> to_char{};
  std::array<int16_t, 324> to_byte{};  // every alphabet code point is below 0x100 + 68

  Alphabet() {
    to_byte.fill(-1);
    char32_t extra = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_char[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : extra++;
      to_byte[to_char[static_cast<size_t>(b)]] = static_cast<int16_t>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet table;  // immutable after construction
  return table;
}

}  // namespace

char32_t byte_to_char(uint8_t byte) noexcept { return alphabet().to_char[byte]; }

std::optional<uint8_t> char_to_byte(char32_t cp) noexcept {
  if (cp >= alphabet().to_byte.size() || alphabet().to_byte[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(alphabet().to_byte[cp]);
}

std::string bytes_to_alphabet(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, byte_to_char(static_cast<uint8_t>(c)));
  return out;
}

std::optional<std::string> alphabet_to_bytes(std::string_view text) {
  if (first_invalid_utf8(text) != text.size()) return std::nullopt;
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length = 0;
    const auto byte = char_to_byte(decode_utf8(text, pos, length));
    if (!byte) return std::nullopt;
    out.push_back(static_cast<char>(*byte));
    pos += length;
  }
  return out;
}

}  // namespace engine::data
