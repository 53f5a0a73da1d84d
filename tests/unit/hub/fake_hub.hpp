// Starts tests/unit/hub/fake_hub.py (a fake Hugging Face Hub on 127.0.0.1) for one test and stops it after.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace engine::testing {

class FakeHub {
 public:
  // args: fake_hub.py options (--repo model:org/name=DIR, --gated org/name, --cut-after N, --corrupt FILE).
  FakeHub(const std::filesystem::path& work, std::vector<std::string> args) : log_(work / "hub.log") {
    const std::filesystem::path port_file = work / "hub.port";
    std::filesystem::remove(port_file);
    const char* src = std::getenv("ENGINE_SOURCE_DIR");
    const std::string script = std::string(src ? src : ".") + "/tests/unit/hub/fake_hub.py";
    args.insert(args.begin(), {"python3", script, "--port-file", port_file.string(), "--log", log_.string()});
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp("python3", argv.data());
      _exit(127);
    }
    for (int i = 0; i < 200 && !std::filesystem::exists(port_file); ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("the fake Hub (python3 " + script + ") exited; is python3 installed?");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::ifstream in(port_file);
    int port = 0;
    in >> port;
    if (port == 0) throw std::runtime_error("the fake Hub did not start");
    endpoint_ = "http://127.0.0.1:" + std::to_string(port);
  }
  ~FakeHub() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  FakeHub(const FakeHub&) = delete;
  FakeHub& operator=(const FakeHub&) = delete;

  const std::string& endpoint() const { return endpoint_; }
  // The requests so far, one line each: "GET /path range=bytes=N- auth=yes".
  std::string log() const {
    std::ifstream in(log_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
  std::string endpoint_;
};

}  // namespace engine::testing
