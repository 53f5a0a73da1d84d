// CudaCachingAllocator: the CUDA device's memory. A caching, stream-ordered, size-binned allocator, so that a
// training step that allocates the same activation and gradient sizes every step calls cudaMalloc only in
// its first step (cudaMalloc and cudaFree synchronise the device and cost tens of microseconds to
// milliseconds each).
//
// Size bins (round_bytes): requests below 1 MiB round up to a multiple of 512 B, larger ones to a multiple of
// 2 MiB (at most 2 MiB - 1 B of slack per block, < 50% only for blocks of 1-2 MiB). A block is only reused
// for a request of the same rounded size: no splitting and so no fragmentation inside a bin. `engine plan`
// uses round_bytes to predict reserved memory.
//
// Stream order (why an immediate reuse is safe): every kernel of the engine runs on the device's compute
// stream, in the order the host enqueues it. deallocate() returns the block to the cache at once, without
// waiting for the GPU; a later allocate() may hand it out again, and whatever the new owner enqueues is on
// the same stream, after every kernel the old owner enqueued, so the GPU finishes with the old contents
// first. The rule that keeps this true: memory used on any other stream must be ordered before the compute
// stream's later work (CudaDevice::copy_from_host_async makes the compute stream wait on the copy stream),
// and work on another stream must not start on a block before the compute stream's earlier work is done (the
// copy stream waits on the compute stream before it writes). A plugin launches on the compute stream (the
// host API's current stream).
//
// Statistics: live bytes (current / peak) count the bytes callers asked for, as on the CPU device. Reserved
// bytes are what the allocator holds from the driver (live and cached blocks at their rounded sizes);
// driver_allocations counts cudaMalloc calls, so "no cudaMalloc after the first step" is checkable.
//
// Out of memory: when cudaMalloc fails, the cached blocks are returned to the driver and the cudaMalloc is
// retried once; if it fails again, engine::Error(ENG_ERR_OUT_OF_MEMORY) says how much was asked for, what is
// live and reserved, what the device has free, and what to change in the recipe.
//
// Poisoning (Options::poison, ENGINE_CUDA_ALLOC_POISON=1): every handed-out block is filled with 0xFF bytes
// on the compute stream (NaN as f32/bf16, -1 as integers), so a kernel that reads memory it did not write
// shows up in the tests. A debugging aid; it costs a memset per allocation.
//
// Thread-safe (one mutex around the bins and the statistics; the driver calls run outside it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

struct CUstream_st;  // cudaStream_t is CUstream_st*; this header needs no CUDA header

namespace engine::rt {

struct CudaAllocatorOptions {
  bool poison = false;  // fill every handed-out block with 0xFF bytes (on the compute stream)

  // The defaults overridden by the environment: ENGINE_CUDA_ALLOC_POISON (0/1). A malformed value throws
  // engine::Error naming it.
  static CudaAllocatorOptions from_environment();
};

struct CudaAllocatorStats {
  int64_t current_bytes = 0;        // bytes callers asked for, of the live allocations
  int64_t peak_bytes = 0;           // high-water mark of current_bytes since the last reset_peak
  int64_t allocations = 0;          // allocate() calls
  int64_t reserved_bytes = 0;       // held from the driver: live + cached blocks (rounded sizes)
  int64_t peak_reserved_bytes = 0;  // high-water mark of reserved_bytes since the last reset_peak
  int64_t cached_bytes = 0;         // freed blocks kept for reuse
  int64_t cache_hits = 0;           // allocations served from the cache
  int64_t driver_allocations = 0;   // cudaMalloc calls that succeeded
  int64_t driver_frees = 0;         // cudaFree calls (empty_cache, the OOM retry, destruction)
};

class CudaCachingAllocator {
 public:
  static constexpr size_t kSmallGranularity = 512;              // bytes, below kLargeThreshold
  static constexpr size_t kLargeThreshold = size_t(1) << 20;    // 1 MiB
  static constexpr size_t kLargeGranularity = size_t(2) << 20;  // 2 MiB, from kLargeThreshold on

  // Blocks on CUDA device `device_index`, ordered on `stream` (the device's compute stream); `label` names
  // the device in messages, e.g. "cuda:0 (NVIDIA H200)".
  CudaCachingAllocator(int device_index, CUstream_st* stream, std::string label,
                       const CudaAllocatorOptions& options = {});
  // Synchronises the stream and returns every block, cached or still live, to the driver.
  ~CudaCachingAllocator();
  CudaCachingAllocator(const CudaCachingAllocator&) = delete;
  CudaCachingAllocator& operator=(const CudaCachingAllocator&) = delete;

  // A block of at least `bytes` (256 B aligned; allocate(0) gives a valid 512 B block). Throws
  // engine::Error(ENG_ERR_OUT_OF_MEMORY) when the driver refuses after the cache was emptied and the
  // allocation retried once.
  void* allocate(size_t bytes);
  // Returns the block to its bin; stream-ordered (see the file comment). nullptr is ignored; `bytes` is only
  // checked (the allocator knows each live block's size); a pointer it did not hand out is logged and
  // ignored.
  void deallocate(void* ptr, size_t bytes);
  // Waits for the compute stream, then cudaFree's every cached block (live blocks are untouched).
  void empty_cache();
  CudaAllocatorStats stats() const;
  void reset_peak();
  const CudaAllocatorOptions& options() const { return options_; }

  // The rounded size a request of `bytes` is served with (>= bytes, >= 512).
  static size_t round_bytes(size_t bytes);

 private:
  struct Live {
    size_t rounded;
    size_t requested;
  };
  // Frees the cached blocks; returns the bytes freed. Takes mu_ itself (not held by the caller).
  size_t release_cache();
  [[noreturn]] void fail_out_of_memory(size_t bytes, size_t rounded, const char* driver_message,
                                       size_t released);

  int device_;
  CUstream_st* stream_;
  std::string label_;
  CudaAllocatorOptions options_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // rounded size -> cached blocks
  std::unordered_map<void*, Live> live_;
  CudaAllocatorStats stats_;
};

}  // namespace engine::rt
