#include "engine/dist/tcp_store.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/core/error.hpp"

namespace engine::dist {

namespace {

using Clock = std::chrono::steady_clock;

// Reads/writes exactly n bytes; false on EOF, error or (with SO_RCVTIMEO) timeout.
bool read_all(int fd, void* buf, size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool write_all(int fd, const void* buf, size_t n) {
  const auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool read_string(int fd, std::string& s) {
  uint32_t len = 0;
  if (!read_all(fd, &len, sizeof len)) return false;
  if (len > (64u << 20)) return false;  // a store value is small; anything larger is not our protocol
  s.resize(len);
  return len == 0 || read_all(fd, s.data(), len);
}

bool write_string(int fd, const std::string& s) {
  const auto len = static_cast<uint32_t>(s.size());
  return write_all(fd, &len, sizeof len) && (len == 0 || write_all(fd, s.data(), len));
}

}  // namespace

TcpStoreServer::TcpStoreServer(uint16_t port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) fail("rendezvous store: socket() failed: {}", std::strerror(errno));
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(port);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    ::close(listen_fd_);
    fail("rendezvous store: cannot listen on port {}: {} (another job on this port? choose --master-port or "
         "MASTER_PORT)",
         port, std::strerror(e));
  }
  ::listen(listen_fd_, 128);
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

TcpStoreServer::~TcpStoreServer() {
  stopping_.store(true);
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : client_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (std::thread& t : threads_) t.join();
  for (int fd : client_fds_) ::close(fd);
}

void TcpStoreServer::accept_loop() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard<std::mutex> lock(mu_);
    client_fds_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void TcpStoreServer::serve(int fd) {
  while (!stopping_.load()) {
    char op = 0;
    std::string key, value;
    if (!read_all(fd, &op, 1) || !read_string(fd, key) || !read_string(fd, value)) return;
    char status = 1;
    std::string reply;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (op == 'S') {
        data_[key] = Entry{std::move(value), Clock::now()};
        status = 0;
      } else if (auto it = data_.find(key); it != data_.end()) {
        status = 0;
        if (op == 'G') {
          reply = it->second.value;
        } else {
          const auto ms =
              std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - it->second.set_at).count();
          reply = std::to_string(ms);
        }
      }
    }
    if (!write_all(fd, &status, 1) || !write_string(fd, reply)) return;
  }
}

TcpStoreClient::TcpStoreClient(std::string host, uint16_t port, std::chrono::milliseconds connect_timeout,
                               std::chrono::milliseconds io_timeout)
    : where_(fmt::format("{}:{}", host, port)) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0 || res == nullptr)
    fail("rendezvous store: cannot resolve MASTER_ADDR '{}': {}", host, ::gai_strerror(rc));
  const auto deadline = Clock::now() + connect_timeout;
  std::string last;
  while (true) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ >= 0 && ::connect(fd_, res->ai_addr, res->ai_addrlen) == 0) break;
    last = std::strerror(errno);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (Clock::now() >= deadline) {
      ::freeaddrinfo(res);
      fail("rendezvous store {}: no answer within {} s ({}); is rank 0 running, and do MASTER_ADDR and "
           "MASTER_PORT name it?",
           where_, connect_timeout.count() / 1000.0, last);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::freeaddrinfo(res);
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(io_timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((io_timeout.count() % 1000) * 1000);
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

TcpStoreClient::~TcpStoreClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::pair<bool, std::string> TcpStoreClient::request(char op, const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(mu_);
  char status = 1;
  std::string reply;
  if (!write_all(fd_, &op, 1) || !write_string(fd_, key) || !write_string(fd_, value) ||
      !read_all(fd_, &status, 1) || !read_string(fd_, reply)) {
    fail("rendezvous store {} (hosted by rank 0) is not answering (rank 0 stopped or gone?)", where_);
  }
  return {status == 0, std::move(reply)};
}

void TcpStoreClient::set(const std::string& key, const std::string& value) { request('S', key, value); }

std::optional<std::string> TcpStoreClient::try_get(const std::string& key) {
  auto [found, v] = request('G', key, {});
  if (!found) return std::nullopt;
  return v;
}

std::string TcpStoreClient::get(const std::string& key, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (auto v = try_get(key)) return *v;
    if (Clock::now() >= deadline)
      fail("rendezvous store {}: key '{}' did not appear within {} s (a rank did not start or joined another "
           "job)",
           where_, key, timeout.count() / 1000.0);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::optional<int64_t> TcpStoreClient::age_ms(const std::string& key) {
  auto [found, v] = request('A', key, {});
  if (!found) return std::nullopt;
  return std::stoll(v);
}

}  // namespace engine::dist
