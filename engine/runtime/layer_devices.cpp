#include "engine/runtime/layer_devices.hpp"

#include <deque>
#include <memory>
#include <mutex>

#include "engine/core/error.hpp"
#include "engine/runtime/device_select.hpp"
#include "engine/runtime/kernel_table.hpp"

namespace engine::rt {
namespace {

// A CPU device with its own memory (allocator and counter: those of a CpuDevice of one thread, which starts no
// worker) and the process CPU device's kernels and threads.
class SimulatedCpuDevice final : public Device {
 public:
  explicit SimulatedCpuDevice(int index) : index_(index), memory_(1) {}
  DeviceType type() const override { return DeviceType::CPU; }
  int index() const override { return index_; }
  void* allocate(size_t bytes) override { return memory_.allocate(bytes); }
  void deallocate(void* ptr, size_t bytes) override { memory_.deallocate(ptr, bytes); }
  MemoryStats memory_stats() const override { return memory_.memory_stats(); }
  void reset_peak_memory() override { memory_.reset_peak_memory(); }
  size_t total_memory() const override { return cpu_device().total_memory(); }
  void empty_cache() override { memory_.empty_cache(); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override { cpu_device().copy_to_host(dst, src, bytes); }
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    cpu_device().copy_from_host(dst, src, bytes);
  }
  void copy_within(void* dst, const void* src, size_t bytes) override { cpu_device().copy_within(dst, src, bytes); }
  void fill_zero(void* dst, size_t bytes) override { cpu_device().fill_zero(dst, bytes); }
  void synchronize() override {}
  cpu::ThreadPool* thread_pool() override { return cpu_device().thread_pool(); }
  const KernelTable& kernels() const override { return cpu_device().kernels(); }

 private:
  int index_;
  CpuDevice memory_;  // only its memory is used
};

Device& simulated_cpu_device(int index) {
  static std::mutex mu;
  static std::deque<std::unique_ptr<SimulatedCpuDevice>> devices;  // devices[i] has index i + 1
  std::lock_guard<std::mutex> lock(mu);
  while (static_cast<int>(devices.size()) < index)
    devices.push_back(std::make_unique<SimulatedCpuDevice>(static_cast<int>(devices.size()) + 1));
  return *devices[static_cast<size_t>(index - 1)];
}

}  // namespace

int layer_devices_available(Device& run) { return run.type() == DeviceType::CPU ? 0 : usable_cuda_devices(); }

std::vector<Device*> layer_devices(Device& run, int n) {
  if (n < 1) fail("a layer placement needs at least one device, got {}", n);
  std::vector<Device*> out{&run};
  if (n == 1) return out;
  if (run.type() != DeviceType::CPU)
    fail_with(ENG_ERR_UNSUPPORTED,
              "parallel.plugin = \"layers\" over {} {} devices: running the blocks on several GPUs of one process "
              "is not implemented (each CUDA op runs on its own device's streams, which this engine does not yet "
              "switch between); use parallel.plugin = \"pp\" with --nproc-per-node {} (one process per GPU, the "
              "same placement by blocks), or parallel.devices = 1",
              n, device_type_name(run.type()), n);
  if (run.index() != 0)
    fail("a layer placement on the CPU starts from the process CPU device (device {} given)", run.index());
  for (int k = 1; k < n; ++k) out.push_back(&simulated_cpu_device(k));
  return out;
}

}  // namespace engine::rt
