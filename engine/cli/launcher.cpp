#include "engine/cli/launcher.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "engine/cli/command.hpp"
#include "engine/core/error.hpp"

namespace engine::cli {

namespace {

std::atomic<int> g_signals{0};
std::atomic<int> g_last_signal{0};

extern "C" void on_launcher_signal(int sig) {
  g_last_signal.store(sig);
  g_signals.fetch_add(1);
}

int parse_count(const std::string& flag, const std::string& v, int min) {
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || x < min || x > 65535)
    throw UsageError(flag + " " + v + ": expected an integer >= " + std::to_string(min));
  return static_cast<int>(x);
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    fail("launcher: cannot find a free TCP port for the rendezvous ({}); pass --master-port", std::strerror(errno));
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

struct Worker {
  int rank = 0;
  pid_t pid = -1;
  int out_fd = -1, err_fd = -1;
  std::string out_buf, err_buf;
  bool running = false;
  int status = 0;
};

// Writes the complete lines of buf with the rank prefix (the rest stays for the next read).
void flush_lines(std::string& buf, int rank, std::FILE* to, bool all) {
  size_t start = 0;
  while (true) {
    const size_t nl = buf.find('\n', start);
    if (nl == std::string::npos) break;
    std::fprintf(to, "[rank %d] %.*s\n", rank, static_cast<int>(nl - start), buf.data() + start);
    start = nl + 1;
  }
  buf.erase(0, start);
  if (all && !buf.empty()) {
    std::fprintf(to, "[rank %d] %s\n", rank, buf.c_str());
    buf.clear();
  }
  std::fflush(to);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "ended";
}

bool failed(int status) { return !(WIFEXITED(status) && WEXITSTATUS(status) == 0); }

std::vector<Worker> spawn_all(const LaunchOptions& o, int port, const std::vector<std::string>& args) {
  std::vector<Worker> ws;
  const int world = o.nnodes * o.nproc_per_node;
  for (int local = 0; local < o.nproc_per_node; ++local) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
      fail("launcher: pipe() failed: {}", std::strerror(errno));
    Worker w;
    w.rank = o.node_rank * o.nproc_per_node + local;
    const pid_t pid = ::fork();
    if (pid < 0) fail("launcher: fork() failed: {}", std::strerror(errno));
    if (pid == 0) {
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::setenv("RANK", std::to_string(w.rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc_per_node).c_str(), 1);
      ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<std::string> argv_s{"engine", "run"};
      argv_s.insert(argv_s.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (std::string& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "launcher: cannot start the worker: %s\n", std::strerror(errno));
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    w.pid = pid;
    w.out_fd = out[0];
    w.err_fd = err[0];
    w.running = true;
    ws.push_back(std::move(w));
  }
  return ws;
}

void signal_all(std::vector<Worker>& ws, int sig) {
  for (Worker& w : ws)
    if (w.running) ::kill(w.pid, sig);
}

// Reads what the workers print and reaps those that end, until all have ended. Returns the first failed
// worker's index (or -1).
int supervise(std::vector<Worker>& ws) {
  int first_failed = -1;
  int forwarded = 0;
  std::chrono::steady_clock::time_point kill_at{};
  bool stopping = false;
  while (true) {
    // Signals to the launcher: the first is forwarded, a second kills.
    const int n_signals = g_signals.load();
    if (n_signals > forwarded) {
      if (forwarded == 0) {
        std::fprintf(stderr, "launcher: forwarding signal %d to the workers (again to kill them)\n",
                     g_last_signal.load());
        signal_all(ws, g_last_signal.load());
      } else {
        signal_all(ws, SIGKILL);
      }
      forwarded = n_signals;
    }
    std::vector<pollfd> fds;
    std::vector<std::pair<Worker*, bool>> who;  // (worker, is stderr)
    for (Worker& w : ws) {
      if (w.out_fd >= 0) fds.push_back({w.out_fd, POLLIN, 0}), who.push_back({&w, false});
      if (w.err_fd >= 0) fds.push_back({w.err_fd, POLLIN, 0}), who.push_back({&w, true});
    }
    if (!fds.empty()) ::poll(fds.data(), fds.size(), 100);
    for (size_t i = 0; i < fds.size(); ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      Worker& w = *who[i].first;
      const bool err = who[i].second;
      char buf[8192];
      const ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
      std::string& b = err ? w.err_buf : w.out_buf;
      if (r > 0) {
        b.append(buf, static_cast<size_t>(r));
        flush_lines(b, w.rank, err ? stderr : stdout, false);
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        flush_lines(b, w.rank, err ? stderr : stdout, true);
        ::close(fds[i].fd);
        (err ? w.err_fd : w.out_fd) = -1;
      }
    }
    bool any_running = false;
    for (size_t i = 0; i < ws.size(); ++i) {
      Worker& w = ws[i];
      if (!w.running) continue;
      int status = 0;
      const pid_t p = ::waitpid(w.pid, &status, WNOHANG);
      if (p == w.pid) {
        w.running = false;
        w.status = status;
        if (failed(status) && first_failed < 0 && !stopping) {
          first_failed = static_cast<int>(i);
          std::fprintf(stderr, "launcher: worker rank %d (pid %d) %s; stopping the other workers\n", w.rank,
                       static_cast<int>(w.pid), describe_status(status).c_str());
          std::fflush(stderr);
          stopping = true;
          signal_all(ws, SIGTERM);
          kill_at = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        }
      } else {
        any_running = true;
      }
    }
    if (stopping && any_running && std::chrono::steady_clock::now() >= kill_at) signal_all(ws, SIGKILL);
    bool pipes_open = false;
    for (const Worker& w : ws) pipes_open = pipes_open || w.out_fd >= 0 || w.err_fd >= 0;
    if (!any_running && !pipes_open) return first_failed;
    if (!any_running && pipes_open && stopping) {
      // A grandchild may hold a pipe open; the workers are gone, so stop reading.
      for (Worker& w : ws) {
        if (w.out_fd >= 0) ::close(w.out_fd), w.out_fd = -1;
        if (w.err_fd >= 0) ::close(w.err_fd), w.err_fd = -1;
      }
      return first_failed;
    }
  }
}

}  // namespace

LaunchOptions take_launch_options(std::vector<std::string>& args) {
  LaunchOptions o;
  bool nnodes_set = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i], value;
    const size_t eq = flag.find('=');
    const bool inline_value = flag.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_value) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    static const char* const known[] = {"--nproc-per-node", "--nnodes",      "--node-rank",
                                        "--master-addr",    "--master-port", "--max-restarts"};
    bool is_known = false;
    for (const char* k : known) is_known = is_known || flag == k;
    if (!is_known) continue;
    size_t take = 1;
    if (!inline_value) {
      if (i + 1 >= args.size()) throw UsageError(flag + " needs a value");
      value = args[i + 1];
      take = 2;
    }
    if (flag == "--nproc-per-node") o.nproc_per_node = parse_count(flag, value, 1);
    if (flag == "--nnodes") o.nnodes = parse_count(flag, value, 1), nnodes_set = true;
    if (flag == "--node-rank") o.node_rank = parse_count(flag, value, 0);
    if (flag == "--master-addr") o.master_addr = value;
    if (flag == "--master-port") o.master_port = parse_count(flag, value, 1);
    if (flag == "--max-restarts") o.max_restarts = parse_count(flag, value, 0);
    args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
               args.begin() + static_cast<std::ptrdiff_t>(i + take));
    --i;
  }
  if (o.nproc_per_node == 0 && (nnodes_set || o.node_rank != 0 || o.master_port != 0 || o.max_restarts != 0))
    throw UsageError("--nnodes, --node-rank, --master-addr, --master-port and --max-restarts need --nproc-per-node N");
  if (o.node_rank >= o.nnodes)
    throw UsageError("--node-rank " + std::to_string(o.node_rank) + " is not below --nnodes " +
                     std::to_string(o.nnodes));
  if (o.nnodes > 1 && o.master_addr == "127.0.0.1")
    throw UsageError("--nnodes " + std::to_string(o.nnodes) +
                     " needs --master-addr: the address of node 0, reachable from every node");
  return o;
}

int launch_workers(const LaunchOptions& options, const std::vector<std::string>& worker_args) {
  const int port = options.master_port != 0 ? options.master_port : options.nnodes == 1 ? free_port() : 29500;
  g_signals.store(0);
  std::signal(SIGINT, on_launcher_signal);
  std::signal(SIGTERM, on_launcher_signal);
  std::fprintf(stderr, "launcher: %d workers on this node (node %d of %d, world size %d), rendezvous at %s:%d\n",
               options.nproc_per_node, options.node_rank, options.nnodes, options.nnodes * options.nproc_per_node,
               options.master_addr.c_str(), port);
  int exit_code = kExitOk;
  for (int attempt = 0;; ++attempt) {
    std::vector<Worker> ws = spawn_all(options, port, worker_args);
    const int failed_index = supervise(ws);
    if (failed_index < 0) {
      exit_code = kExitOk;
      break;
    }
    const Worker& w = ws[static_cast<size_t>(failed_index)];
    if (attempt < options.max_restarts && g_signals.load() == 0) {
      std::fprintf(stderr,
                   "launcher: worker rank %d %s; restarting every worker (restart %d of %d) from the latest "
                   "checkpoint\n",
                   w.rank, describe_status(w.status).c_str(), attempt + 1, options.max_restarts);
      continue;
    }
    std::fprintf(stderr, "launcher: the run failed: worker rank %d %s%s\n", w.rank,
                 describe_status(w.status).c_str(),
                 options.max_restarts > 0 ? (" (after " + std::to_string(attempt) + " restarts)").c_str() : "");
    exit_code = kExitRuntime;
    break;
  }
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  return exit_code;
}

}  // namespace engine::cli
