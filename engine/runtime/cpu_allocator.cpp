#include "engine/runtime/cpu_allocator.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/core/error.hpp"

namespace engine::rt {

namespace {

constexpr size_t kAlign = 64;
constexpr size_t kHugePage = size_t(2) << 20;  // 2 MiB

bool env_flag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  const std::string s(v);
  if (s == "1" || s == "true" || s == "on" || s == "yes") return true;
  if (s == "0" || s == "false" || s == "off" || s == "no") return false;
  fail("environment variable {}='{}' is not a flag; use 1 or 0", name, s);
}

size_t env_bytes(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  const std::string s(v);
  size_t pos = 0;
  unsigned long long n = 0;
  try {
    n = std::stoull(s, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos == 0 || s[0] == '-') {
    fail("environment variable {}='{}' is not a byte count; use e.g. 0, 536870912, 512M or 4G", name, s);
  }
  unsigned long long scale = 1;
  const std::string suffix = s.substr(pos);
  if (suffix == "K" || suffix == "k")
    scale = 1ull << 10;
  else if (suffix == "M" || suffix == "m")
    scale = 1ull << 20;
  else if (suffix == "G" || suffix == "g")
    scale = 1ull << 30;
  else if (!suffix.empty())
    fail("environment variable {}='{}' has an unknown suffix '{}'; use K, M or G", name, s, suffix);
  return static_cast<size_t>(n * scale);
}

}  // namespace

CpuAllocatorOptions CpuAllocatorOptions::from_environment() {
  CpuAllocatorOptions o;
  o.cache_limit_bytes = env_bytes("ENGINE_CPU_CACHE_BYTES", o.cache_limit_bytes);
  o.hugepages = env_flag("ENGINE_CPU_HUGEPAGES", o.hugepages);
  o.poison = env_flag("ENGINE_CPU_ALLOC_POISON", o.poison);
  return o;
}

size_t CpuCachingAllocator::class_bytes(size_t bytes) {
  if (bytes <= 512) return std::max<size_t>(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
  // p: the largest power of two <= bytes; step p/8 (>= 64): at most 12.5% waste, 8 classes per octave.
  size_t p = size_t(1) << (63 - __builtin_clzll(static_cast<unsigned long long>(bytes)));
  const size_t step = std::max(kAlign, p / 8);
  return (bytes + step - 1) / step * step;
}

CpuCachingAllocator::CpuCachingAllocator(const CpuAllocatorOptions& options) : options_(options) {}

CpuCachingAllocator::~CpuCachingAllocator() { empty_cache(); }

void* CpuCachingAllocator::os_allocate(size_t class_size) {
  // Blocks of >= 2 MiB start on a huge page boundary so transparent huge pages can back all of their whole
  // 2 MiB pages (the tail beyond the last whole one stays on small pages; the class size is not rounded up).
  const bool huge = class_size >= kHugePage;
  void* p = nullptr;
  if (posix_memalign(&p, huge ? kHugePage : kAlign, class_size) != 0) return nullptr;
  if (huge && options_.hugepages) {
    // Advice on the whole pages inside the block; a kernel without transparent huge pages refuses it, which
    // changes nothing else.
    const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
    const uintptr_t end = (begin + class_size) / kHugePage * kHugePage;
    if (end > begin) (void)madvise(p, end - begin, MADV_HUGEPAGE);
  }
  return p;
}

void CpuCachingAllocator::os_free(void* ptr) { std::free(ptr); }

void* CpuCachingAllocator::allocate(size_t bytes) {
  const size_t cls = class_bytes(bytes);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(cls);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      if (it->second.empty()) free_.erase(it);
      cached_ -= static_cast<int64_t>(cls);
      ++hits_;
    }
  }
  if (p == nullptr) {
    p = os_allocate(cls);
    if (p == nullptr) {  // cached blocks of other classes may be what the OS is missing
      empty_cache();
      p = os_allocate(cls);
    }
    if (p == nullptr) {
      fail_with(ENG_ERR_OUT_OF_MEMORY, "out of CPU memory allocating {} bytes (a block of {} bytes)", bytes,
                cls);
    }
    std::lock_guard<std::mutex> lock(mu_);
    reserved_ += static_cast<int64_t>(cls);
    peak_reserved_ = std::max(peak_reserved_, reserved_);
    ++os_allocations_;
  }
  if (options_.poison) std::memset(p, 0xFF, cls);
  return p;
}

void CpuCachingAllocator::evict_locked(size_t incoming, size_t keep_class, std::vector<void*>& to_free) {
  // cached_ + incoming must not exceed the cap; drop the largest classes first (fewest blocks to free).
  auto over = [&] { return static_cast<size_t>(cached_) + incoming > options_.cache_limit_bytes; };
  for (auto it = free_.end(); over() && it != free_.begin();) {
    --it;
    if (it->first == keep_class) continue;
    std::vector<void*>& blocks = it->second;
    while (over() && !blocks.empty()) {
      to_free.push_back(blocks.back());
      blocks.pop_back();
      cached_ -= static_cast<int64_t>(it->first);
      reserved_ -= static_cast<int64_t>(it->first);
    }
    if (blocks.empty()) it = free_.erase(it);
  }
}

void CpuCachingAllocator::deallocate(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  const size_t cls = class_bytes(bytes);
  std::vector<void*> to_free;
  bool keep = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cls <= options_.cache_limit_bytes) {
      evict_locked(cls, cls, to_free);
      if (static_cast<size_t>(cached_) + cls <= options_.cache_limit_bytes) {
        free_[cls].push_back(ptr);
        cached_ += static_cast<int64_t>(cls);
        keep = true;
      }
    }
    if (!keep) reserved_ -= static_cast<int64_t>(cls);
  }
  if (!keep) to_free.push_back(ptr);
  for (void* p : to_free) os_free(p);
}

void CpuCachingAllocator::empty_cache() {
  std::vector<void*> to_free;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [cls, blocks] : free_) {
      to_free.insert(to_free.end(), blocks.begin(), blocks.end());
      reserved_ -= static_cast<int64_t>(cls * blocks.size());
    }
    free_.clear();
    cached_ = 0;
  }
  for (void* p : to_free) os_free(p);
}

void CpuCachingAllocator::set_cache_limit(size_t bytes) {
  std::vector<void*> to_free;
  {
    std::lock_guard<std::mutex> lock(mu_);
    options_.cache_limit_bytes = bytes;
    evict_locked(0, 0, to_free);
  }
  for (void* p : to_free) os_free(p);
}

CpuAllocatorStats CpuCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {reserved_, peak_reserved_, cached_, hits_, os_allocations_};
}

void CpuCachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  peak_reserved_ = reserved_;
}

}  // namespace engine::rt
