#include "kernels/cpu/thread_pool.hpp"

#include <algorithm>

namespace engine::cpu {

namespace {
thread_local bool t_inside_pool = false;

void chunk_range(int64_t n, int chunks, int k, int64_t* begin, int64_t* end) {
  const int64_t base = n / chunks, extra = n % chunks;
  *begin = k * base + std::min<int64_t>(k, extra);
  *end = *begin + base + (k < extra ? 1 : 0);
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

int ThreadPool::chunks(int64_t n, int64_t grain) const {
  if (n <= 0) return 0;
  grain = std::max<int64_t>(1, grain);
  const int64_t by_grain = (n + grain - 1) / grain;
  return static_cast<int>(std::min<int64_t>(by_grain, size()));
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  parallel_chunks(n, grain, [&fn](int, int64_t b, int64_t e) { fn(b, e); });
}

void ThreadPool::parallel_chunks(int64_t n, int64_t grain, const std::function<void(int, int64_t, int64_t)>& fn) {
  const int c = chunks(n, grain);
  if (c == 0) return;
  if (c == 1 || t_inside_pool || workers_.empty()) {
    // Same chunking as the threaded path, so per-chunk partials (and hence results) do not depend on nesting.
    for (int k = 0; k < c; ++k) {
      int64_t b, e;
      chunk_range(n, c, k, &b, &e);
      fn(k, b, e);
    }
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_n_ = n;
    job_chunks_ = c;
    pending_ = c - 1;
    ++generation_;
  }
  wake_.notify_all();
  int64_t b, e;
  chunk_range(n, c, 0, &b, &e);
  t_inside_pool = true;
  fn(0, b, e);
  t_inside_pool = false;
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return pending_ == 0; });
  job_ = nullptr;
}

void ThreadPool::worker_loop(int id) {
  t_inside_pool = true;
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int, int64_t, int64_t)>* job;
    int64_t n;
    int c;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = job_n_;
      c = job_chunks_;
    }
    if (id < c) {
      int64_t b, e;
      chunk_range(n, c, id, &b, &e);
      (*job)(id, b, e);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_all();
    }
  }
}

}  // namespace engine::cpu
