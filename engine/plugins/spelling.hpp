// "Did you mean": the closest candidates to a misspelled word by edit distance
// (engine/core/edit_distance.hpp, a swap of neighbours counting as one edit), for recipe keys, section names
// and plugin names.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/core/edit_distance.hpp"  // the measure of closeness, with a swap as one edit

namespace engine::plugins {

// The candidates within a distance that scales with the word's length (at most a third of it, at least 1,
// at most 3), closest first.
std::vector<std::string> closest_matches(std::string_view word, const std::vector<std::string>& candidates);

// "; did you mean 'weight_decay'?" or "" when nothing is close.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

// "a, b, c" (sorted as given).
std::string join(const std::vector<std::string>& items, std::string_view separator = ", ");

}  // namespace engine::plugins
