// Device: where tensor memory lives and kernels run. The CPU device is always present; the CUDA device comes
// from kernels/cuda behind the same interface. Each device owns its allocator (with current/peak statistics)
// and its execution resources (the CPU thread pool; CUDA streams and handles).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/abi/engine.h"
#include "engine/runtime/cpu_allocator.hpp"

namespace engine::cpu {
class ThreadPool;
}

namespace engine::rt {

struct KernelTable;  // engine/runtime/kernel_table.hpp

enum class DeviceType : uint32_t { CPU = ENG_DEVICE_CPU, CUDA = ENG_DEVICE_CUDA };

const char* device_type_name(DeviceType type);

struct MemoryStats {
  int64_t current_bytes = 0;  // bytes held by live allocations
  int64_t peak_bytes = 0;     // high-water mark of current_bytes since the last reset_peak
  int64_t allocations = 0;    // allocate() calls so far
  // The caching allocator's view (appended; 0 on devices without a cache): bytes held from the device's
  // memory system (live blocks at their rounded size plus cached free blocks), its high-water mark since the
  // last reset_peak, the cached free bytes alone, and allocations served from the cache.
  int64_t reserved_bytes = 0;
  int64_t peak_reserved_bytes = 0;
  int64_t cached_bytes = 0;
  int64_t cache_hits = 0;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual DeviceType type() const = 0;
  virtual int index() const = 0;

  // Memory through the device's caching allocator. allocate(0) returns a valid unique pointer or nullptr.
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  virtual MemoryStats memory_stats() const = 0;
  virtual void reset_peak_memory() = 0;
  virtual size_t total_memory() const = 0;  // physical memory of the device (for `engine plan`)
  // Returns the allocator's cached free blocks to the OS/driver (live allocations are untouched).
  virtual void empty_cache() {}

  // Copies between this device's memory and host memory, and within the device; synchronous from the
  // caller's point of view: on return the host buffer may be reused, and host reads (copy_to_host) and every
  // later kernel of this device see the result. (On CUDA, copy_within and fill_zero are ordered on the
  // compute stream instead of waited for, which no caller can tell apart.)
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_within(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* dst, size_t bytes) = 0;
  virtual void synchronize() = 0;

  // The arithmetic of the built-in ops on this device (engine/runtime/kernel_table.hpp).
  virtual const KernelTable& kernels() const = 0;

  // The CPU device's thread pool (nullptr on other devices).
  virtual cpu::ThreadPool* thread_pool() { return nullptr; }
  // The CUDA stream (nullptr on the CPU).
  virtual void* stream() { return nullptr; }

  // Streams and asynchronous copies (appended for the CUDA backend; synchronize() waits for both streams).
  // The stream every kernel of this device runs on, a cudaStream_t (nullptr on the CPU); stream() is the
  // same.
  virtual void* compute_stream() { return nullptr; }
  // The stream host-to-device copies run on, a cudaStream_t (nullptr on the CPU).
  virtual void* copy_stream() { return nullptr; }
  // Copies `bytes` of host memory (pageable, e.g. an mmapped safetensors tensor) to device memory without
  // waiting for the transfer: on return `src` has been read and may be released, and every later kernel of
  // this device sees the data. Default: the synchronous copy_from_host.
  virtual void copy_from_host_async(void* dst, const void* src, size_t bytes) {
    copy_from_host(dst, src, bytes);
  }

  // The dense GEMM rate of this device in its compute dtype, FLOP/s: the denominator of MFU. Measured once,
  // on the first call (CUDA: bf16 8192^3 through the device's cuBLASLt runner, about 0.1 s, outside the
  // allocator's accounting); 0 where the engine does not measure it (the CPU).
  virtual double gemm_ceiling_flops() { return 0.0; }

  // Activation offload (appended; engine/runtime/activation_offload.hpp). Host memory the device can copy to
  // and from without staging (CUDA: pinned; here, for devices whose memory is host memory: the heap), and
  // copies that run behind the compute stream's work without blocking it: a fenced copy starts after every
  // kernel enqueued on the compute stream so far and returns a fence; compute_wait(fence) makes the compute
  // stream's later work wait for the copy, fence_release frees the fence (NULL accepted). The defaults copy
  // synchronously and return NULL fences, which is exact for host-memory devices.
  virtual void* host_pinned_allocate(size_t bytes);
  virtual void host_pinned_free(void* ptr, size_t bytes);
  virtual void* copy_to_host_fenced(void* host_dst, const void* src, size_t bytes);
  virtual void* copy_from_host_fenced(void* dst, const void* host_src, size_t bytes);
  virtual void compute_wait(void* fence) { (void)fence; }
  virtual void fence_release(void* fence) { (void)fence; }
  // Whether the copy behind `fence` has finished (never blocks; NULL: true).
  virtual bool fence_done(void* fence) {
    (void)fence;
    return true;
  }

  // train.deterministic (appended): whether kernels that have a faster non-deterministic variant keep the
  // deterministic one (the default). CUDA: cuDNN's attention backward, whose non-deterministic algorithm
  // accumulates dQ with atomics and needs a workspace of O(tokens) instead of O(tokens^2 x heads). A device
  // without such a variant refuses false (every kernel of it is deterministic already), so the key is never
  // accepted and ignored.
  virtual void set_deterministic(bool deterministic);
  virtual bool deterministic() const { return true; }
};

// Tracks current and peak bytes; shared by device implementations.
class MemoryCounter {
 public:
  void on_allocate(size_t bytes);
  void on_deallocate(size_t bytes);
  MemoryStats stats() const;
  void reset_peak();

 private:
  std::atomic<int64_t> current_{0};
  std::atomic<int64_t> peak_{0};
  std::atomic<int64_t> allocations_{0};
};

// The host CPU: 64-byte aligned allocations through a CpuCachingAllocator (cpu_allocator.hpp; options from
// the environment by default), a ThreadPool of `threads` workers (<= 0: all cores).
class CpuDevice final : public Device {
 public:
  explicit CpuDevice(int threads = 0);
  CpuDevice(int threads, const CpuAllocatorOptions& allocator_options);
  ~CpuDevice() override;
  DeviceType type() const override { return DeviceType::CPU; }
  int index() const override { return 0; }
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  MemoryStats memory_stats() const override;
  void reset_peak_memory() override;
  size_t total_memory() const override;
  void empty_cache() override { allocator_.empty_cache(); }
  CpuCachingAllocator& allocator() { return allocator_; }
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_within(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* dst, size_t bytes) override;
  void synchronize() override {}
  cpu::ThreadPool* thread_pool() override { return pool_.get(); }
  const KernelTable& kernels() const override;

 private:
  MemoryCounter counter_;
  CpuCachingAllocator allocator_;
  std::unique_ptr<cpu::ThreadPool> pool_;
};

// The process-wide CPU device (created on first use with ENGINE_NUM_THREADS or all cores).
CpuDevice& cpu_device();

}  // namespace engine::rt
