#include "engine/data/added_tokens.hpp"

#include <algorithm>
#include <cstring>

#include "engine/data/utf8.hpp"

namespace engine::data {
namespace {

// Rust's char::is_alphanumeric or '_', approximated for non-ASCII as "not whitespace" (letters and digits of
// other scripts; only single_word tokens look at it).
bool is_word_char(char32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
  return !is_unicode_whitespace(cp);
}

}  // namespace

void AddedVocabulary::add(AddedToken token, const Normalizer& normalizer) {
  if (token.content.empty()) return;
  Set& set = token.normalized ? normalized_ : raw_;
  std::string text = token.content;
  if (token.normalized) {
    std::string normalized;
    if (normalizer.normalize(token.content, normalized, nullptr)) text = std::move(normalized);
  }
  set.first_byte[static_cast<uint8_t>(text[0])] = true;
  set.matchers.push_back({std::move(text), tokens_.size()});
  std::stable_sort(set.matchers.begin(), set.matchers.end(),
                   [](const Matcher& a, const Matcher& b) { return a.text.size() > b.text.size(); });
  tokens_.push_back(std::move(token));
}

void AddedVocabulary::split(std::string_view text, bool normalized_pass,
                            std::vector<TextSegment>& out) const {
  const Set& set = normalized_pass ? normalized_ : raw_;
  size_t segment_start = 0;  // end of the previous match
  if (!set.matchers.empty()) {
    size_t pos = 0;
    while (pos < text.size()) {
      if (!set.first_byte[static_cast<uint8_t>(text[pos])]) {
        ++pos;
        continue;
      }
      const Matcher* found = nullptr;
      for (const auto& m : set.matchers) {
        if (m.text.size() <= text.size() - pos &&
            std::memcmp(text.data() + pos, m.text.data(), m.text.size()) == 0) {
          found = &m;
          break;
        }
      }
      if (found == nullptr) {
        ++pos;
        continue;
      }
      const AddedToken& token = tokens_[found->token];
      size_t start = pos, stop = pos + found->text.size();
      if (token.single_word) {
        size_t length = 0;
        const bool start_ok = start == 0 || !is_word_char(decode_utf8_before(text, start, length));
        const bool stop_ok = stop == text.size() || !is_word_char(decode_utf8(text, stop, length));
        if (!start_ok || !stop_ok) {
          pos = stop;  // the automaton moves past a rejected match
          continue;
        }
      }
      if (token.lstrip) {
        while (start > segment_start) {
          size_t length = 0;
          if (!is_unicode_whitespace(decode_utf8_before(text, start, length))) break;
          start -= length;
        }
      }
      if (token.rstrip) {
        while (stop < text.size()) {
          size_t length = 0;
          if (!is_unicode_whitespace(decode_utf8(text, stop, length))) break;
          stop += length;
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
