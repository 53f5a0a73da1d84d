#include "engine/plugins/spelling.hpp"

#include <algorithm>
#include <utility>

#include "engine/core/edit_distance.hpp"

namespace engine::plugins {

std::vector<std::string> closest_matches(std::string_view word, const std::vector<std::string>& candidates) {
  const size_t limit = std::clamp<size_t>(word.size() / 3, 1, 3);
  std::vector<std::pair<size_t, std::string>> scored;
  for (const std::string& c : candidates) {
    size_t d = edit_distance(word, c, Transposition::kOneEdit);
    if (d <= limit && c != word) scored.emplace_back(d, c);
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::string> out;
  for (auto& [d, c] : scored) out.push_back(std::move(c));
  return out;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  std::vector<std::string> m = closest_matches(word, candidates);
  if (m.empty()) return "";
  std::string out = "; did you mean '" + m[0] + "'";
  if (m.size() > 1) out += " or '" + m[1] + "'";
  return out + "?";
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += separator;
    out += items[i];
  }
  return out;
}

}  // namespace engine::plugins
