// Helpers of the end-to-end tests: run the built `engine` binary (ENGINE_BINARY_DIR/bin/engine) as a child
// process with its output in a log file, signal it, and read what a run leaves in its output directory.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace engine::e2e {

namespace fs = std::filesystem;

// A directory ctest passes in the environment; run outside ctest, say which variable is missing.
inline fs::path env_dir(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == 0) {
    std::fprintf(stderr, "%s is not set: run this test through ctest (cd build && ctest -R <name>)\n", name);
    std::exit(2);
  }
  return fs::path(v);
}
inline fs::path engine_binary() { return env_dir("ENGINE_BINARY_DIR") / "bin" / "engine"; }
inline fs::path source_dir() { return env_dir("ENGINE_SOURCE_DIR"); }

inline fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("engine_e2e_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Starts `engine args...` with stdout and stderr appended to `log` (in directory `cwd` when given); returns its
// pid.
// `env`: extra NAME=value variables for the child.
inline pid_t spawn(const std::vector<std::string>& args, const fs::path& log, const fs::path& cwd = {},
                   const std::vector<std::string>& env = {}) {
  pid_t pid = fork();
  if (pid == 0) {
    for (const std::string& kv : env) putenv(const_cast<char*>(kv.c_str()));
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    FILE* f = std::fopen(log.c_str(), "a");
    if (f != nullptr) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    std::vector<char*> argv;
    std::string bin = engine_binary().string();
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// Waits for the child; its exit code, or 128 + signal.
inline int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

inline int run_engine(const std::vector<std::string>& args, const fs::path& log, const fs::path& cwd = {}) {
  return wait_exit(spawn(args, log, cwd));
}

inline std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Whether two files hold the same bytes (a bool, so that a failure does not print binary contents).
inline bool same_bytes(const fs::path& a, const fs::path& b) {
  return fs::exists(a) && fs::exists(b) && read_file(a) == read_file(b);
}

inline std::vector<nlohmann::json> read_metrics(const fs::path& output_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream f(output_dir / "metrics.jsonl");
  std::string line;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(j);
  }
  return out;
}

// Training lines only (those with "loss"), by step.
inline std::map<int64_t, nlohmann::json> train_lines(const fs::path& output_dir) {
  std::map<int64_t, nlohmann::json> out;
  for (const auto& j : read_metrics(output_dir)) {
    if (j.contains("loss")) out[j["step"].get<int64_t>()] = j;
  }
  return out;
}

// Polls until pred() or the timeout; true when pred() held.
template <typename Pred>
bool wait_until(Pred pred, double timeout_s) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}

}  // namespace engine::e2e
