// Runs a shell command and captures its output (stdout+stderr, or stdout only) and exit code (tests of the
// `engine` executable).
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace engine::testing {

struct ProcessResult {
  int exit_code = -1;
  std::string output;
};

inline ProcessResult run_process(const std::string& command, bool with_stderr = true) {
  ProcessResult r;
  FILE* pipe = ::popen((command + (with_stderr ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace engine::testing
