#include "engine/io/closest_names.hpp"

#include <algorithm>
#include <utility>

#include "engine/core/edit_distance.hpp"

namespace engine::io {

std::vector<std::string_view> closest_names(std::string_view name,
                                            const std::vector<std::string_view>& candidates, size_t limit) {
  std::vector<std::pair<size_t, size_t>> scored;  // (distance, index into candidates)
  for (size_t i = 0; i < candidates.size(); ++i) {
    const size_t d = edit_distance(name, candidates[i], Transposition::kTwoEdits);
    if (2 * d <= std::max(name.size(), candidates[i].size())) scored.emplace_back(d, i);
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::string_view> out;
  for (size_t k = 0; k < scored.size() && k < limit; ++k) out.push_back(candidates[scored[k].second]);
  return out;
}

}  // namespace engine::io
