#include "engine/data/added_tokens.hpp"

#include <unicode/uchar.h>

#include "engine/data/utf8_codec.hpp"

namespace engine::data {
namespace {

// A "word" character as HF's single_word check sees it: Rust regex's Unicode \w, i.e. Alphabetic, marks,
// decimal digits, connector punctuation and the joiners U+200C/U+200D.
bool is_word_char(char32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
  if (cp == 0x200C || cp == 0x200D) return true;
  const auto c = static_cast<UChar32>(cp);
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC)) return true;
  switch (u_charType(c)) {
    case U_NON_SPACING_MARK:
    case U_ENCLOSING_MARK:
    case U_COMBINING_SPACING_MARK:
    case U_DECIMAL_DIGIT_NUMBER:
    case U_CONNECTOR_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

}  // namespace

void AddedVocabulary::Set::insert(const std::string& text, int32_t token) {
  first_byte[static_cast<uint8_t>(text[0])] = true;
  int32_t node = 0;
  for (char c : text) {
    const auto byte = static_cast<uint8_t>(c);
    int32_t next = -1;
    for (const auto& [b, child] : nodes[static_cast<size_t>(node)].children) {
      if (b == byte) next = child;
    }
    if (next < 0) {
      next = static_cast<int32_t>(nodes.size());
      nodes[static_cast<size_t>(node)].children.emplace_back(byte, next);
      nodes.emplace_back();
    }
    node = next;
  }
  if (nodes[static_cast<size_t>(node)].token < 0)
    nodes[static_cast<size_t>(node)].token = token;  // first wins
}

std::pair<size_t, int32_t> AddedVocabulary::Set::longest(std::string_view text, size_t pos) const {
  std::pair<size_t, int32_t> best{0, -1};
  int32_t node = 0;
  for (size_t k = pos; k < text.size(); ++k) {
    const auto byte = static_cast<uint8_t>(text[k]);
    int32_t next = -1;
    for (const auto& [b, child] : nodes[static_cast<size_t>(node)].children) {
      if (b == byte) {
        next = child;
        break;
      }
    }
    if (next < 0) break;
    node = next;
    if (nodes[static_cast<size_t>(node)].token >= 0)
      best = {k + 1 - pos, nodes[static_cast<size_t>(node)].token};
  }
  return best;
}

void AddedVocabulary::add(AddedToken token, const Normalizer& normalizer) {
  if (token.content.empty()) return;
  std::string text = token.content;
  if (token.normalized) {
    std::string normalized;
    if (normalizer.normalize(token.content, normalized, nullptr)) text = std::move(normalized);
  }
  (token.normalized ? normalized_ : raw_).insert(text, static_cast<int32_t>(tokens_.size()));
  tokens_.push_back(std::move(token));
}

void AddedVocabulary::split(std::string_view text, bool normalized_pass,
                            std::vector<TextSegment>& out) const {
  const Set& set = normalized_pass ? normalized_ : raw_;
  size_t segment_start = 0;  // end of the previous match
  if (!set.empty()) {
    size_t pos = 0;
    while (pos < text.size()) {
      if (!set.first_byte[static_cast<uint8_t>(text[pos])]) {
        ++pos;
        continue;
      }
      const auto [length, index] = set.longest(text, pos);
      if (index < 0) {
        ++pos;
        continue;
      }
      const AddedToken& token = tokens_[static_cast<size_t>(index)];
      size_t start = pos, stop = pos + length;
      if (token.single_word) {
        size_t n = 0;
        const bool start_ok = start == 0 || !is_word_char(decode_utf8_before(text, start, n));
        const bool stop_ok = stop == text.size() || !is_word_char(decode_utf8(text, stop, n));
        if (!start_ok || !stop_ok) {
          pos = stop;  // the automaton moves past a rejected match
          continue;
        }
      }
      if (token.lstrip) {
        while (start > segment_start) {
          size_t n = 0;
          if (!is_unicode_whitespace(decode_utf8_before(text, start, n))) break;
          start -= n;
        }
      }
      if (token.rstrip) {
        while (stop < text.size()) {
          size_t n = 0;
          if (!is_unicode_whitespace(decode_utf8(text, stop, n))) break;
          stop += n;
        }
      }
      if (segment_start < start) {
        out.push_back({static_cast<uint32_t>(segment_start), static_cast<uint32_t>(start), -1});
      }
      out.push_back({static_cast<uint32_t>(start), static_cast<uint32_t>(stop), token.id});
      segment_start = stop;
      pos = stop;
    }
  }
  if (segment_start < text.size()) {
    out.push_back({static_cast<uint32_t>(segment_start), static_cast<uint32_t>(text.size()), -1});
  }
}

const AddedToken* AddedVocabulary::find(int32_t id) const {
  for (const auto& t : tokens_) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

const AddedToken* AddedVocabulary::find(std::string_view content) const {
  for (const auto& t : tokens_) {
    if (t.content == content) return &t;
  }
  return nullptr;
}

}  // namespace engine::data
