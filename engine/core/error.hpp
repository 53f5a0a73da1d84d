// engine::Error: the one exception type inside the engine. Its message is for the user: what failed, the
// file or key involved, and what would fix it. At the ABI edge it becomes a status code plus that message.
#pragma once

#include <spdlog/fmt/fmt.h>

#include <stdexcept>
#include <string>

#include "engine/abi/engine.h"

namespace engine {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, eng_status status = ENG_ERR_INVALID_ARGUMENT)
      : std::runtime_error(message), status_(status) {}
  eng_status status() const noexcept { return status_; }

 private:
  eng_status status_;
};

// fail("cannot open {}: {}", path, why) throws engine::Error with the formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Same with an explicit status code (ENG_ERR_IO for file problems, ...).
template <typename... Args>
[[noreturn]] void fail_with(eng_status status, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...), status);
}

// The name of a status code, for messages.
const char* status_name(eng_status status) noexcept;

}  // namespace engine
