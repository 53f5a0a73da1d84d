#include "engine/runtime/device.hpp"

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

void MemoryCounter::on_allocate(size_t bytes) {
  const int64_t now = current_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  allocations_.fetch_add(1);
}

void MemoryCounter::on_deallocate(size_t bytes) { current_.fetch_sub(static_cast<int64_t>(bytes)); }

MemoryStats MemoryCounter::stats() const { return {current_.load(), peak_.load(), allocations_.load()}; }

void MemoryCounter::reset_peak() { peak_.store(current_.load()); }

CpuDevice::CpuDevice(int threads) : pool_(std::make_unique<cpu::ThreadPool>(threads)) {}
CpuDevice::~CpuDevice() = default;

void* CpuDevice::allocate(size_t bytes) {
  const size_t rounded = ((bytes + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) fail_with(ENG_ERR_OUT_OF_MEMORY, "out of CPU memory allocating {} bytes", bytes);
  counter_.on_allocate(bytes);
  return p;
}

void CpuDevice::deallocate(void* ptr, size_t bytes) {
  if (!ptr) return;
  std::free(ptr);
  counter_.on_deallocate(bytes);
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
