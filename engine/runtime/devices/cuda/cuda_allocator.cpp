#include "engine/runtime/devices/cuda/cuda_allocator.hpp"

#include <cuda_runtime.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "engine/core/error.hpp"
#include "engine/runtime/devices/cuda/device_guard.hpp"
#include "kernels/cuda/cuda_check.cuh"

namespace engine::rt {

namespace {

bool env_flag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  const std::string s(v);
  if (s == "1" || s == "true" || s == "on" || s == "yes") return true;
  if (s == "0" || s == "false" || s == "off" || s == "no") return false;
  fail("environment variable {}='{}' is not a flag; use 1 or 0", name, s);
}

// "1.25 GiB", "512 KiB", "37 B".
std::string human_bytes(double bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 6) {
    bytes /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.2f} {}", bytes, units[u]);
}

}  // namespace

CudaAllocatorOptions CudaAllocatorOptions::from_environment() {
  CudaAllocatorOptions o;
  o.poison = env_flag("ENGINE_CUDA_ALLOC_POISON", o.poison);
  return o;
}

size_t CudaCachingAllocator::round_bytes(size_t bytes) {
  const size_t g = bytes < kLargeThreshold ? kSmallGranularity : kLargeGranularity;
  if (bytes > std::numeric_limits<size_t>::max() - g) return std::numeric_limits<size_t>::max();
  return std::max(g, (bytes + g - 1) / g * g);
}

CudaCachingAllocator::CudaCachingAllocator(int device_index, CUstream_st* stream, std::string label,
                                           const CudaAllocatorOptions& options)
    : device_(device_index), stream_(stream), label_(std::move(label)), options_(options) {}

CudaCachingAllocator::~CudaCachingAllocator() {
  // Nothing may be running on a block we free; the device is going away, so live blocks go too.
  try {
    CudaDeviceGuard guard(device_);
    cudaStreamSynchronize(stream_);
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) cudaFree(p);
    for (auto& [p, live] : live_) cudaFree(p);
  } catch (const std::exception& e) {
    spdlog::debug("CUDA allocator of {}: releasing memory at exit failed: {}", label_, e.what());
  }
}

void* CudaCachingAllocator::allocate(size_t bytes) {
  const size_t rounded = round_bytes(bytes);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(rounded);
    if (it != free_.end()) {
      p = it->second.back();
      it->second.pop_back();
      if (it->second.empty()) free_.erase(it);
      stats_.cached_bytes -= static_cast<int64_t>(rounded);
      ++stats_.cache_hits;
    }
  }
  CudaDeviceGuard guard(device_);
  if (p == nullptr) {
    if (rounded == std::numeric_limits<size_t>::max())
      fail_out_of_memory(bytes, rounded, "the size overflows", 0);
    cudaError_t err = cudaMalloc(&p, rounded);
    size_t released = 0;
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // not sticky; clear it before the retry
      // Blocks of other sizes in the cache may be what the driver is missing: return them, retry once.
      released = release_cache();
      err = cudaMalloc(&p, rounded);
    }
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      fail_out_of_memory(bytes, rounded, cudaGetErrorString(err), released);
    }
    CUDA_CHECK(err);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.reserved_bytes += static_cast<int64_t>(rounded);
    stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
    ++stats_.driver_allocations;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_.emplace(p, Live{rounded, bytes});
    stats_.current_bytes += static_cast<int64_t>(bytes);
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
    ++stats_.allocations;
  }
  if (options_.poison) CUDA_CHECK(cudaMemsetAsync(p, 0xFF, rounded, stream_));
  return p;
}

void CudaCachingAllocator::deallocate(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  if (it == live_.end()) {
    spdlog::error(
        "CUDA allocator of {}: deallocate({}, {}) of a pointer it did not hand out (or a second free); "
        "ignored",
        label_, ptr, bytes);
    return;
  }
  const Live live = it->second;
  if (live.requested != bytes)
    spdlog::debug("CUDA allocator of {}: deallocate({}) with {} bytes, allocated with {}", label_, ptr, bytes,
                  live.requested);
  live_.erase(it);
  stats_.current_bytes -= static_cast<int64_t>(live.requested);
  // Stream-ordered: the block is reusable at once (cuda_allocator.hpp says why that is safe).
  free_[live.rounded].push_back(ptr);
  stats_.cached_bytes += static_cast<int64_t>(live.rounded);
}

size_t CudaCachingAllocator::release_cache() {
  std::map<size_t, std::vector<void*>> blocks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    blocks.swap(free_);
    stats_.cached_bytes = 0;
  }
  if (blocks.empty()) return 0;
  // Kernels enqueued before the blocks were freed may still be reading them.
  CudaDeviceGuard guard(device_);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  size_t freed = 0;
  int64_t frees = 0;
  for (auto& [size, list] : blocks) {
    for (void* p : list) {
      CUDA_CHECK(cudaFree(p));
      freed += size;
      ++frees;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.reserved_bytes -= static_cast<int64_t>(freed);
  stats_.driver_frees += frees;
  return freed;
}

void CudaCachingAllocator::empty_cache() { release_cache(); }

void CudaCachingAllocator::fail_out_of_memory(size_t bytes, size_t rounded, const char* driver_message,
                                              size_t released) {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) cudaGetLastError();
  const CudaAllocatorStats s = stats();
  fail_with(
      ENG_ERR_OUT_OF_MEMORY,
      "out of CUDA memory on {}: asked for {} ({} bytes, a block of {} bytes; {}); {} live in tensors, "
      "{} reserved by the engine's allocator (after returning its {} cache to the driver and retrying), {} "
      "free of {} on the GPU. To fit: lower train.micro_batch_size (and raise "
      "train.grad_accum to keep the batch), set train.activation_checkpointing = true, lower "
      "data.max_seq_len, or quantize the frozen base (nf4); `engine plan <recipe>` estimates the memory "
      "a recipe needs",
      label_, human_bytes(double(bytes)), bytes, rounded, driver_message,
      human_bytes(double(s.current_bytes)), human_bytes(double(s.reserved_bytes)),
      human_bytes(double(released)), human_bytes(double(free_bytes)), human_bytes(double(total_bytes)));
}

CudaAllocatorStats CudaCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CudaCachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_bytes = stats_.current_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

}  // namespace engine::rt
