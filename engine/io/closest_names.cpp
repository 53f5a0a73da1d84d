#include "engine/io/closest_names.hpp"

#include <algorithm>
#include <utility>

namespace engine::io {
namespace {

// Levenshtein distance, O(|a| * |b|) time, O(|b|) memory.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace

std::vector<std::string_view> closest_names(std::string_view name,
                                            const std::vector<std::string_view>& candidates, size_t limit) {
  std::vector<std::pair<size_t, size_t>> scored;  // (distance, index into candidates)
  for (size_t i = 0; i < candidates.size(); ++i) {
    const size_t d = edit_distance(name, candidates[i]);
    if (2 * d <= std::max(name.size(), candidates[i].size())) scored.emplace_back(d, i);
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::string_view> out;
  for (size_t k = 0; k < scored.size() && k < limit; ++k) out.push_back(candidates[scored[k].second]);
  return out;
}

}  // namespace engine::io
