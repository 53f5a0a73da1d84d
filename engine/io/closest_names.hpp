// closest_names: the known names nearest to a misspelt one, for "did you mean" in error messages.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace engine::io {

// Up to `limit` entries of `candidates` with the smallest Levenshtein distance to `name` (ties keep input
// order), leaving out those so far that they would not help (distance above half the longer length).
std::vector<std::string_view> closest_names(std::string_view name,
                                            const std::vector<std::string_view>& candidates, size_t limit);

}  // namespace engine::io
