#include "engine/runtime/device.hpp"

#include "engine/runtime/kernel_table.hpp"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "engine/core/error.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace engine::rt {

const char* device_type_name(DeviceType type) {
  switch (type) {
    case DeviceType::CPU: return "cpu";
    case DeviceType::CUDA: return "cuda";
  }
  return "unknown";
}

// The defaults of the offload entries: host-memory devices copy synchronously (their memory is host memory).
void* Device::host_pinned_allocate(size_t bytes) {
  void* p = ::operator new(bytes == 0 ? 1 : bytes, std::align_val_t{64}, std::nothrow);
  if (p == nullptr)
    fail_with(ENG_ERR_OUT_OF_MEMORY, "cannot allocate {} bytes of host memory for offloaded activations", bytes);
  return p;
}

void Device::host_pinned_free(void* ptr, size_t bytes) {
  (void)bytes;
  if (ptr != nullptr) ::operator delete(ptr, std::align_val_t{64});
}

void* Device::copy_to_host_fenced(void* host_dst, const void* src, size_t bytes) {
  copy_to_host(host_dst, src, bytes);
  return nullptr;
}

void* Device::copy_from_host_fenced(void* dst, const void* host_src, size_t bytes) {
  copy_from_host(dst, host_src, bytes);
  return nullptr;
}

void Device::set_deterministic(bool deterministic) {
  if (!deterministic)
    fail_with(ENG_ERR_INVALID_ARGUMENT,
              "train.deterministic = false, but the {} device has no non-deterministic kernels (every kernel "
              "of it is deterministic): remove the key, or train on a GPU (train.device = \"cuda\")",
              device_type_name(type()));
}

void MemoryCounter::on_allocate(size_t bytes) {
  const int64_t now = current_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  allocations_.fetch_add(1);
}

void MemoryCounter::on_deallocate(size_t bytes) { current_.fetch_sub(static_cast<int64_t>(bytes)); }

MemoryStats MemoryCounter::stats() const {
  MemoryStats s;
  s.current_bytes = current_.load();
  s.peak_bytes = peak_.load();
  s.allocations = allocations_.load();
  return s;
}

void MemoryCounter::reset_peak() { peak_.store(current_.load()); }

CpuDevice::CpuDevice(int threads) : CpuDevice(threads, CpuAllocatorOptions::from_environment()) {}
CpuDevice::CpuDevice(int threads, const CpuAllocatorOptions& allocator_options)
    : allocator_(allocator_options), pool_(std::make_unique<cpu::ThreadPool>(threads)) {}
CpuDevice::~CpuDevice() = default;

const KernelTable& CpuDevice::kernels() const { return cpu_kernel_table(); }

void* CpuDevice::allocate(size_t bytes) {
  void* p = allocator_.allocate(bytes);
  counter_.on_allocate(bytes);
  return p;
}

void CpuDevice::deallocate(void* ptr, size_t bytes) {
  if (!ptr) return;
  allocator_.deallocate(ptr, bytes);
  counter_.on_deallocate(bytes);
}

MemoryStats CpuDevice::memory_stats() const {
  MemoryStats s = counter_.stats();
  const CpuAllocatorStats a = allocator_.stats();
  s.reserved_bytes = a.reserved_bytes;
  s.peak_reserved_bytes = a.peak_reserved_bytes;
  s.cached_bytes = a.cached_bytes;
  s.cache_hits = a.cache_hits;
  return s;
}

void CpuDevice::reset_peak_memory() {
  counter_.reset_peak();
  allocator_.reset_peak();
}

size_t CpuDevice::total_memory() const {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
}

void CpuDevice::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuDevice::copy_from_host(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void CpuDevice::copy_within(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memmove(dst, src, bytes);
}
void CpuDevice::fill_zero(void* dst, size_t bytes) {
  if (bytes) std::memset(dst, 0, bytes);
}

CpuDevice& cpu_device() {
  static CpuDevice device([] {
    const char* env = std::getenv("ENGINE_NUM_THREADS");
    return env ? std::atoi(env) : 0;
  }());
  return device;
}

}  // namespace engine::rt
