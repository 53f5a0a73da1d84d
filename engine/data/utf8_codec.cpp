#include "engine/data/utf8_codec.hpp"

#include "engine/core/utf8.hpp"

namespace engine::data {

char32_t decode_utf8(std::string_view text, size_t pos, size_t& length) noexcept {
  // Bounds and continuation bytes are checked even though callers pass valid UTF-8: a chat message from the
  // command line (engine generate --chat --prompt) reached here unvalidated and a cut-off sequence at its end
  // read past the string (found by fuzz/chat_template_fuzz.cpp). Anything malformed decodes as U+FFFD, 1 byte.
  length = 1;
  if (pos >= text.size()) return 0xFFFD;
  const auto b = [&](size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(text[pos + i])); };
  const char32_t b0 = b(0);
  if (b0 < 0x80) return b0;
  const size_t n = b0 < 0xC0 ? 0 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : b0 < 0xF8 ? 4 : 0;
  if (n == 0 || n > text.size() - pos) return 0xFFFD;
  for (size_t i = 1; i < n; ++i) {
    if ((b(i) & 0xC0) != 0x80) return 0xFFFD;
  }
  length = n;
  if (n == 2) return ((b0 & 0x1F) << 6) | (b(1) & 0x3F);
  if (n == 3) return ((b0 & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  return ((b0 & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
}

char32_t decode_utf8_before(std::string_view text, size_t end, size_t& length) noexcept {
  length = 1;
  if (end == 0 || end > text.size()) return 0xFFFD;
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  size_t n = 0;
  const char32_t cp = decode_utf8(text, start, n);
  if (start + n != end) return 0xFFFD;  // not one whole sequence ending at `end`: step back one byte
  length = n;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_unicode_whitespace(char32_t cp) noexcept {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t consumed = 0;
    const size_t n = utf8_sequence_length(bytes, pos, consumed);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      pos += consumed;
    } else {
      out.append(bytes.substr(pos, n));
      pos += n;
    }
  }
  return out;
}

}  // namespace engine::data
