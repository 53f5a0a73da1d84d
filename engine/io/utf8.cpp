#include "engine/io/utf8.hpp"

namespace engine::io {

size_t valid_utf8_prefix(std::span<const std::byte> s) noexcept {
  size_t i = 0;
  const size_t n = s.size();
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < n) {
    const unsigned char c = at(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (at(i + 1) < lo || at(i + 1) > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if (at(i + k) < 0x80 || at(i + k) > 0xbf) return i;
    }
    i += len;
  }
  return n;
}

}  // namespace engine::io
