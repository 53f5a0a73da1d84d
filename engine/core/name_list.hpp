// name_list: a list of names short enough for an error message ("a, b, c and 7 more").
#pragma once

#include <spdlog/fmt/fmt.h>

#include <cstddef>
#include <string>
#include <vector>

namespace engine {

// The first `max_shown` names joined with ", ", then " and N more" for the rest.
inline std::string name_list(const std::vector<std::string>& names, size_t max_shown = 8) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < max_shown; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > max_shown) s += fmt::format(" and {} more", names.size() - max_shown);
  return s;
}

}  // namespace engine
