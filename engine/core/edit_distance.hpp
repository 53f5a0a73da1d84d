// edit_distance: how far apart two names are, for "did you mean" in error messages (recipe keys, plugin
// names, parameter and tensor names). The one copy for every layer.
#pragma once

#include <cstddef>
#include <string_view>

namespace engine {

// How a swap of two neighbouring characters ("wieght" for "weight") counts.
enum class Transposition {
  kOneEdit,   // optimal string alignment distance: a swap is one edit
  kTwoEdits,  // Levenshtein distance: a swap is two substitutions
};

// The fewest insertions, deletions and substitutions (and, with kOneEdit, swaps of neighbours) that turn `a`
// into `b`. O(|a| * |b|) time, O(|b|) memory.
size_t edit_distance(std::string_view a, std::string_view b,
                     Transposition transposition = Transposition::kOneEdit);

}  // namespace engine
