// Shared by the libFuzzer targets: what counts as a clean outcome. The engine's contract on bad input is an
// engine::Error (or a nlohmann/std exception the caller turns into one) with a message; anything else (a
// crash, a sanitizer report, an uncaught exception of another kind, a hang) is a bug the fuzzer reports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/core/error.hpp"

namespace engine::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits the input at the first `sep`: (before, after); after is empty when there is none.
inline std::pair<std::string_view, std::string_view> split_once(std::string_view text, std::string_view sep) {
  const size_t at = text.find(sep);
  if (at == std::string_view::npos) return {text, {}};
  return {text.substr(0, at), text.substr(at + sep.size())};
}

// Runs f, accepting engine::Error (the documented failure) and nothing else.
template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const engine::Error&) {
  }
}

}  // namespace engine::fuzz
