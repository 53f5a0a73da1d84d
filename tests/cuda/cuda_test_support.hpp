// What every CUDA test shares: skip cleanly where no GPU is present, device buffers that are poisoned with
// NaN before a kernel writes them, random (never zero) inputs, and the relative-error norm the tolerances use.
//
// Error norm (stated once for every cuda test): rel_error(got, want) = max_i |got_i - want_i| / max(max_i
// |want_i|, 1e-30), the largest absolute difference relative to the largest reference magnitude. Tolerances:
// fp32 <= 1e-5, bf16 <= 1e-2 unless a test says why it differs.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace engine::cuda_test {

// True when a CUDA device can be used; otherwise the reason, printed by SKIP_WITHOUT_GPU.
bool gpu_available(std::string* why = nullptr);

#define SKIP_WITHOUT_GPU()                                                     \
  do {                                                                         \
    std::string why_;                                                          \
    if (!::engine::cuda_test::gpu_available(&why_)) GTEST_SKIP() << why_;      \
  } while (0)

// n uniform values in [lo, hi) with |v| >= 1e-3 (never zero), from a fixed seed.
std::vector<float> random_values(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);

// bf16 round trip of host floats (what a bf16 device buffer holds).
std::vector<float> round_to_bf16(const std::vector<float>& v);
std::vector<__nv_bfloat16> to_bf16(const std::vector<float>& v);
std::vector<float> from_bf16(const std::vector<__nv_bfloat16>& v);

double rel_error(const std::vector<float>& got, const std::vector<float>& want);

// A device buffer of T, freed at scope exit. Poisoned with NaN bytes (0xFF) on creation.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T)) != cudaSuccess) throw std::bad_alloc();
    cudaMemset(p_, 0xFF, std::max<size_t>(n, 1) * sizeof(T));
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return static_cast<T*>(p_); }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) {
    cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    cudaDeviceSynchronize();
    cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  void* p_ = nullptr;
  size_t n_;
};

}  // namespace engine::cuda_test
