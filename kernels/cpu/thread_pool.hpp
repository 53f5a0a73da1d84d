// ThreadPool: a fixed set of worker threads with a deterministic parallel_for.
//
// parallel_for(n, grain, fn) splits [0, n) into at most size() contiguous chunks of at least `grain` items,
// chunk k always covering the same range for the same (n, grain, size()), and runs fn(begin, end) on them.
// Kernels that reduce keep one partial result per chunk and combine them in chunk order, so results are
// bitwise reproducible run to run (no atomics on floats, no work stealing). Owned by the CPU device.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace engine::cpu {

class ThreadPool {
 public:
  // threads <= 0: std::thread::hardware_concurrency().
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Number of chunks parallel_for will use for (n, grain).
  int chunks(int64_t n, int64_t grain) const;

  // Runs fn(chunk_begin, chunk_end) over [0, n) split into chunks(n, grain) contiguous ranges; blocks until all
  // are done. The calling thread runs chunk 0. Nested calls from inside fn run serially.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Same, also passing the chunk index (for per-chunk partial results).
  void parallel_chunks(int64_t n, int64_t grain, const std::function<void(int, int64_t, int64_t)>& fn);

 private:
  void worker_loop(int id);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int, int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_chunks_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace engine::cpu
