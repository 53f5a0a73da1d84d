// CpuCachingAllocator: the CPU device's host memory. Freed blocks are kept in per-size-class free lists and
// handed out again to requests of the same class, so a training step that allocates the same activation and
// gradient sizes every step stops returning large blocks to the OS and page-faulting them in again.
//
// Size classes (class_bytes): requests up to 512 B round up to a multiple of 64 B; larger ones to a multiple
// of max(64 B, p / 8) where p is the largest power of two <= the request, so a block wastes at most 12.5% and
// a request is served only from its own class (no splitting, no fragmentation between classes). Blocks are 64
// B aligned; blocks of at least 2 MiB are 2 MiB aligned and, when hugepages are on (off by default: it did
// not measurably help the CPU training step once blocks are reused, see bench/RESULTS.md),
// madvise(MADV_HUGEPAGE)'d so a kernel in THP "madvise" mode backs them with transparent huge pages.
//
// Statistics: live bytes (current / peak) count the bytes callers asked for, exactly as if every allocation
// came from the OS, so peak comparisons (activation checkpointing) are unaffected by caching. Reserved bytes
// are what the allocator holds from the OS: live blocks plus cached blocks, at their class size.
//
// The cache is capped (Options::cache_limit_bytes): a freed block that would push the cached bytes over the
// cap first evicts cached blocks of other classes (largest first) and is itself returned to the OS when it
// still does not fit. empty_cache() returns every cached block. Cap 0 disables caching: every block goes
// straight back to the OS (the behaviour of plain aligned_alloc/free).
//
// Poisoning (Options::poison, ENGINE_CPU_ALLOC_POISON=1): every block is filled with 0xFF bytes when handed
// out (NaN as f32/f64/bf16/f16, -1 as integers), so a kernel that reads memory it did not write produces NaNs
// or wrong indices instead of silently relying on fresh zero pages. A debugging aid; it costs a memset.
//
// Thread-safe (one mutex around the free lists; the OS calls run outside it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace engine::rt {

struct CpuAllocatorOptions {
  size_t cache_limit_bytes = size_t(4) << 30;  // cap on cached (freed, not yet returned) bytes; 0: no caching
  bool hugepages = false;                      // madvise(MADV_HUGEPAGE) blocks of >= 2 MiB
  bool poison = false;                         // fill every handed-out block with 0xFF bytes

  // The defaults overridden by the environment: ENGINE_CPU_CACHE_BYTES (bytes, suffix K/M/G allowed),
  // ENGINE_CPU_HUGEPAGES (0/1), ENGINE_CPU_ALLOC_POISON (0/1). A malformed value throws engine::Error naming
  // it.
  static CpuAllocatorOptions from_environment();
};

struct CpuAllocatorStats {
  int64_t reserved_bytes = 0;       // held from the OS: live + cached blocks (class sizes)
  int64_t peak_reserved_bytes = 0;  // high-water mark of reserved_bytes since the last reset_peak
  int64_t cached_bytes = 0;         // freed blocks kept for reuse
  int64_t cache_hits = 0;           // allocations served from the cache
  int64_t os_allocations = 0;       // blocks obtained from the OS
};

class CpuCachingAllocator {
 public:
  explicit CpuCachingAllocator(const CpuAllocatorOptions& options = {});
  ~CpuCachingAllocator();  // returns the cached blocks; live blocks must have been freed
  CpuCachingAllocator(const CpuCachingAllocator&) = delete;
  CpuCachingAllocator& operator=(const CpuCachingAllocator&) = delete;

  // A block of at least `bytes` (64 B aligned; allocate(0) gives a valid 64 B block). Throws
  // engine::Error(ENG_ERR_OUT_OF_MEMORY) when the OS refuses, after emptying the cache and retrying once.
  void* allocate(size_t bytes);
  // `bytes` must be the size passed to allocate. nullptr is ignored.
  void deallocate(void* ptr, size_t bytes);
  void empty_cache();
  CpuAllocatorStats stats() const;
  void reset_peak();
  const CpuAllocatorOptions& options() const { return options_; }
  void set_cache_limit(size_t bytes);  // evicts down to the new cap at once

  // The class size a request of `bytes` is served with (>= bytes, >= 64).
  static size_t class_bytes(size_t bytes);

 private:
  void* os_allocate(size_t class_size);
  static void os_free(void* ptr);
  // Evicts cached blocks (largest class first, never `keep_class`) until cached + incoming <= limit; returns
  // the blocks to free outside the lock. Caller holds mu_.
  void evict_locked(size_t incoming, size_t keep_class, std::vector<void*>& to_free);

  CpuAllocatorOptions options_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // class size -> cached blocks
  int64_t reserved_ = 0, peak_reserved_ = 0, cached_ = 0, hits_ = 0, os_allocations_ = 0;
};

}  // namespace engine::rt
