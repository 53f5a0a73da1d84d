// TcpStore: the rendezvous of a distributed run, a key-value store over TCP at MASTER_ADDR:MASTER_PORT.
// Rank 0 hosts it (TcpStoreServer, one thread per connection); every rank talks to it through a
// TcpStoreClient. It only carries small things: Gloo's transport addresses, the NCCL unique id, and each
// rank's heartbeat (which collective it is in) so that a timeout can name the rank that is missing.
//
// Wire format (one request, one reply, on a persistent connection; lengths little-endian u32):
//   request: op (1 byte: 'S' set, 'G' get, 'A' age) | key length | key | value length | value
//   reply:   status (1 byte: 0 found, 1 missing) | value length | value
// 'A' answers the milliseconds since the key was last set, as decimal text (the server's clock), so a
// stale heartbeat is seen without comparing clocks across machines.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace engine::dist {

class TcpStoreServer {
 public:
  // Listens on port (all interfaces). port 0 picks a free one (port() tells which).
  explicit TcpStoreServer(uint16_t port);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;
  uint16_t port() const { return port_; }

 private:
  struct Entry {
    std::string value;
    std::chrono::steady_clock::time_point set_at;
  };
  void accept_loop();
  void serve(int fd);

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::map<std::string, Entry> data_;
  std::vector<int> client_fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

class TcpStoreClient {
 public:
  // Connects, retrying until `connect_timeout` (the server may start after this rank). Every reply must
  // come within `io_timeout`, else engine::Error names the store as not answering.
  TcpStoreClient(std::string host, uint16_t port, std::chrono::milliseconds connect_timeout,
                 std::chrono::milliseconds io_timeout = std::chrono::seconds(10));
  ~TcpStoreClient();
  TcpStoreClient(const TcpStoreClient&) = delete;
  TcpStoreClient& operator=(const TcpStoreClient&) = delete;

  void set(const std::string& key, const std::string& value);
  std::optional<std::string> try_get(const std::string& key);
  // Waits until the key exists; engine::Error after `timeout` naming the key.
  std::string get(const std::string& key, std::chrono::milliseconds timeout);
  // Milliseconds since the key was last set (nullopt: never set).
  std::optional<int64_t> age_ms(const std::string& key);
  const std::string& address() const { return where_; }

 private:
  std::pair<bool, std::string> request(char op, const std::string& key, const std::string& value);

  std::string where_;
  int fd_ = -1;
  std::mutex mu_;
};

}  // namespace engine::dist
