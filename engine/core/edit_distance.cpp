#include "engine/core/edit_distance.hpp"

#include <algorithm>
#include <utility>
#include <vector>

namespace engine {

size_t edit_distance(std::string_view a, std::string_view b, Transposition transposition) {
  // Dynamic programming over rows prev2 (i-2), prev (i-1) and cur (i) of the |a| x |b| distance table.
  const size_t n = b.size();
  std::vector<size_t> prev2(n + 1), prev(n + 1), cur(n + 1);
  for (size_t j = 0; j <= n; ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= n; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (transposition == Transposition::kOneEdit && i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
          a[i - 2] == b[j - 1])
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
    }
    std::swap(prev2, prev);
    std::swap(prev, cur);
  }
  return prev[n];
}

}  // namespace engine
