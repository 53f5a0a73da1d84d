#include "engine/runtime/devices/cuda/cuda_device.hpp"

#include <cuda_runtime.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>

#include "engine/core/error.hpp"
#include "engine/runtime/devices/cuda/device_guard.hpp"
#include "kernels/cuda/attention_cudnn.hpp"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/gemm.cuh"

namespace engine::rt {

CudaDevice::CudaDevice(int index, const CudaAllocatorOptions& allocator_options) : index_(index) {
  std::string why;
  const int count = cuda_device_count(&why);
  if (count == 0) fail("cannot use CUDA device {}: {}", index, why);
  if (index < 0 || index >= count)
    fail("cannot use CUDA device {}: {} CUDA device{} visible (cuda:0..cuda:{})", index, count,
         count == 1 ? " is" : "s are", count - 1);
  try {
    CUDA_CHECK(cudaSetDevice(index));
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
    props_.name = prop.name;
    props_.sm_count = prop.multiProcessorCount;
    props_.cc_major = prop.major;
    props_.cc_minor = prop.minor;
    props_.total_memory = prop.totalGlobalMem;
    label_ = fmt::format("cuda:{} ({})", index, props_.name);

    CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&copy_done_, cudaEventDisableTiming));
    for (auto& e : staging_free_) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    allocator_ = std::make_unique<CudaCachingAllocator>(index, compute_, label_, allocator_options);
    gemm_ = std::make_unique<cuda::GemmRunner>(kCublasWorkspaceBytes);
  } catch (...) {
    release();
    throw;
  }
  spdlog::debug("{}: {} SMs, compute capability {}.{}, {} bytes", label_, props_.sm_count, props_.cc_major,
                props_.cc_minor, props_.total_memory);
}

CudaDevice::~CudaDevice() { release(); }

void CudaDevice::release() noexcept {
  // Best effort: a device being torn down reports nothing it cannot act on.
  if (cudaSetDevice(index_) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  if (compute_) cudaStreamSynchronize(compute_);
  if (copy_) cudaStreamSynchronize(copy_);
  cudnn_.reset();
  gemm_.reset();
  if (allocator_) {
    for (auto& [content, ptr] : constants_) allocator_->deallocate(ptr, content.size());
  }
  constants_.clear();
  allocator_.reset();
  for (void*& s : staging_) {
    if (s) cudaFreeHost(s);
    s = nullptr;
  }
  for (auto& e : staging_free_) {
    if (e) cudaEventDestroy(e);
    e = nullptr;
  }
  if (offload_) cudaStreamSynchronize(offload_);
  for (CUevent_st* e : free_fences_) cudaEventDestroy(e);
  free_fences_.clear();
  if (offload_ready_) cudaEventDestroy(offload_ready_);
  if (offload_) cudaStreamDestroy(offload_);
  offload_ready_ = nullptr;
  offload_ = nullptr;
  if (copy_done_) cudaEventDestroy(copy_done_);
  if (compute_ready_) cudaEventDestroy(compute_ready_);
  if (copy_) cudaStreamDestroy(copy_);
  if (compute_) cudaStreamDestroy(compute_);
  copy_done_ = compute_ready_ = nullptr;
  copy_ = compute_ = nullptr;
  cudaGetLastError();
}

void* CudaDevice::allocate(size_t bytes) { return allocator_->allocate(bytes); }

void CudaDevice::deallocate(void* ptr, size_t bytes) { allocator_->deallocate(ptr, bytes); }

MemoryStats CudaDevice::memory_stats() const {
  const CudaAllocatorStats a = allocator_->stats();
  MemoryStats s;
  s.current_bytes = a.current_bytes;
  s.peak_bytes = a.peak_bytes;
  s.allocations = a.allocations;
  s.reserved_bytes = a.reserved_bytes;
  s.peak_reserved_bytes = a.peak_reserved_bytes;
  s.cached_bytes = a.cached_bytes;
  s.cache_hits = a.cache_hits;
  return s;
}

void CudaDevice::reset_peak_memory() { allocator_->reset_peak(); }

void CudaDevice::empty_cache() { allocator_->empty_cache(); }

void CudaDevice::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CudaDeviceGuard guard(index_);
  // On the compute stream, after the kernels that write `src` (and after any upload: the compute stream
  // waits for those).
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, compute_));
  CUDA_CHECK(cudaStreamSynchronize(compute_));
}

void CudaDevice::copy_from_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  copy_from_host_async(dst, src, bytes);
  CudaDeviceGuard guard(index_);
  CUDA_CHECK(cudaStreamSynchronize(copy_));
}

void CudaDevice::copy_within(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  CudaDeviceGuard guard(index_);
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, compute_));
}

void CudaDevice::fill_zero(void* dst, size_t bytes) {
  if (bytes == 0) return;
  CudaDeviceGuard guard(index_);
  CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, compute_));
}

void CudaDevice::synchronize() {
  CudaDeviceGuard guard(index_);
  CUDA_CHECK(cudaStreamSynchronize(copy_));
  CUDA_CHECK(cudaStreamSynchronize(compute_));
  std::lock_guard<std::mutex> lock(offload_mu_);
  if (offload_) CUDA_CHECK(cudaStreamSynchronize(offload_));
}

void CudaDevice::ensure_staging() {
  for (void*& s : staging_) {
    if (s) continue;
    const cudaError_t err = cudaHostAlloc(&s, kStagingBytes, cudaHostAllocDefault);
    if (err != cudaSuccess) {
      cudaGetLastError();
      s = nullptr;
      fail_with(ENG_ERR_OUT_OF_MEMORY, "{}: cannot pin {} bytes of host memory for upload staging: {}",
                label_, kStagingBytes, cudaGetErrorString(err));
    }
  }
}

void CudaDevice::copy_from_host_async(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CudaDeviceGuard guard(index_);
  std::lock_guard<std::mutex> lock(copy_mu_);
  ensure_staging();
  // `dst` may be a block the allocator recycled while kernels enqueued earlier on the compute stream still
  // read it: the copy stream starts writing only after them.
  CUDA_CHECK(cudaEventRecord(compute_ready_, compute_));
  CUDA_CHECK(cudaStreamWaitEvent(copy_, compute_ready_, 0));
  const char* from = static_cast<const char*>(src);
  char* to = static_cast<char*>(dst);
  // Double buffering: fill staging buffer i on the host while the DMA out of the other one runs.
  for (size_t offset = 0, chunk = 0; offset < bytes; offset += kStagingBytes, ++chunk) {
    const size_t n = std::min(kStagingBytes, bytes - offset);
    const size_t i = chunk % 2;
    CUDA_CHECK(cudaEventSynchronize(staging_free_[i]));  // the previous DMA out of buffer i is done
    std::memcpy(staging_[i], from + offset, n);
    CUDA_CHECK(cudaMemcpyAsync(to + offset, staging_[i], n, cudaMemcpyHostToDevice, copy_));
    CUDA_CHECK(cudaEventRecord(staging_free_[i], copy_));
  }
  // Every later kernel of this device runs after the upload.
  CUDA_CHECK(cudaEventRecord(copy_done_, copy_));
  CUDA_CHECK(cudaStreamWaitEvent(compute_, copy_done_, 0));
}

void* CudaDevice::host_pinned_allocate(size_t bytes) {
  CudaDeviceGuard guard(index_);
  void* p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, bytes == 0 ? 1 : bytes, cudaHostAllocDefault);
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail_with(ENG_ERR_OUT_OF_MEMORY,
              "{}: cannot pin {} bytes of host memory for offloaded activations: {}; pin less (train.keep_attention "
              "= false halves what train.offload_activations pins; fewer train.offload_kept_blocks; or "
              "train.offload_activations = false) or free host memory",
              label_, bytes, cudaGetErrorString(err));
  }
  return p;
}

void CudaDevice::host_pinned_free(void* ptr, size_t bytes) {
  (void)bytes;
  if (ptr == nullptr) return;
  CudaDeviceGuard guard(index_);
  cudaFreeHost(ptr);
  cudaGetLastError();
}

void* CudaDevice::fenced_copy(void* dst, const void* src, size_t bytes, int kind) {
  CudaDeviceGuard guard(index_);
  std::lock_guard<std::mutex> lock(offload_mu_);
  if (offload_ == nullptr) {
    CUDA_CHECK(cudaStreamCreateWithFlags(&offload_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&offload_ready_, cudaEventDisableTiming));
  }
  cudaEvent_t fence = nullptr;
  if (!free_fences_.empty()) {
    fence = free_fences_.back();
    free_fences_.pop_back();
  } else {
    CUDA_CHECK(cudaEventCreateWithFlags(&fence, cudaEventDisableTiming));
  }
  // After every kernel enqueued so far: the one writing `src` (to host) or the last reader of the block the
  // allocator recycled as `dst` (to the device).
  CUDA_CHECK(cudaEventRecord(offload_ready_, compute_));
  CUDA_CHECK(cudaStreamWaitEvent(offload_, offload_ready_, 0));
  if (bytes > 0)
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, static_cast<cudaMemcpyKind>(kind), offload_));
  CUDA_CHECK(cudaEventRecord(fence, offload_));
  return fence;
}

void* CudaDevice::copy_to_host_fenced(void* host_dst, const void* src, size_t bytes) {
  return fenced_copy(host_dst, src, bytes, cudaMemcpyDeviceToHost);
}

void* CudaDevice::copy_from_host_fenced(void* dst, const void* host_src, size_t bytes) {
  return fenced_copy(dst, host_src, bytes, cudaMemcpyHostToDevice);
}

void CudaDevice::compute_wait(void* fence) {
  if (fence == nullptr) return;
  CudaDeviceGuard guard(index_);
  CUDA_CHECK(cudaStreamWaitEvent(compute_, static_cast<cudaEvent_t>(fence), 0));
}

void CudaDevice::fence_release(void* fence) {
  if (fence == nullptr) return;
  std::lock_guard<std::mutex> lock(offload_mu_);
  free_fences_.push_back(static_cast<cudaEvent_t>(fence));
}

bool CudaDevice::fence_done(void* fence) {
  if (fence == nullptr) return true;
  CudaDeviceGuard guard(index_);
  const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(fence));
  if (e == cudaErrorNotReady) return false;
  CUDA_CHECK(e);
  return true;
}

const void* CudaDevice::constant_buffer(const void* host, size_t bytes) {
  std::string content(static_cast<const char*>(host), bytes);
  std::lock_guard<std::mutex> lock(constants_mu_);
  auto it = constants_.find(content);
  if (it != constants_.end()) return it->second;
  void* p = allocator_->allocate(bytes);
  try {
    copy_from_host_async(p, host, bytes);
  } catch (...) {
    allocator_->deallocate(p, bytes);
    throw;
  }
  constants_.emplace(std::move(content), p);
  return p;
}

double CudaDevice::gemm_ceiling_flops() {
  std::call_once(ceiling_once_, [&] {
    CudaDeviceGuard guard(index_);
    // bf16 in, bf16 out, fp32 accumulation: the type pair of the training step's GEMMs. Raw cudaMalloc so
    // that the measurement never shows in the allocator's peak.
    constexpr int64_t n = 8192;
    const size_t bytes = size_t(n) * n * 2;
    void* buf[3] = {};
    cudaEvent_t start = nullptr, stop = nullptr;
    try {
      for (void*& b : buf) CUDA_CHECK(cudaMalloc(&b, bytes));
      CUDA_CHECK(cudaMemsetAsync(buf[0], 0, bytes, compute_));
      CUDA_CHECK(cudaMemsetAsync(buf[1], 0, bytes, compute_));
      CUDA_CHECK(cudaEventCreate(&start));
      CUDA_CHECK(cudaEventCreate(&stop));
      cuda::GemmDesc d;
      d.M = d.N = d.K = n;
      d.lda = d.ldb = d.ldc = n;
      d.ab_type = d.c_type = cuda::GemmType::BF16;
      for (int i = 0; i < 3; ++i) gemm_->run(compute_, d, buf[0], buf[1], buf[2]);  // warm-up, algorithm choice
      constexpr int kTimed = 10;
      CUDA_CHECK(cudaEventRecord(start, compute_));
      for (int i = 0; i < kTimed; ++i) gemm_->run(compute_, d, buf[0], buf[1], buf[2]);
      CUDA_CHECK(cudaEventRecord(stop, compute_));
      CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      gemm_ceiling_ = ms > 0 ? 2.0 * double(n) * n * n * kTimed / (double(ms) * 1e-3) : 0.0;
    } catch (const std::exception& e) {
      spdlog::warn("{}: could not measure the GEMM ceiling ({}); MFU is not reported", label_, e.what());
      gemm_ceiling_ = 0.0;
    }
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    for (void* b : buf)
      if (b) cudaFree(b);
  });
  return gemm_ceiling_;
}

cublasLtContext* CudaDevice::cublaslt_handle() const { return gemm_->handle(); }
void* CudaDevice::cublaslt_workspace() const { return gemm_->workspace(); }
size_t CudaDevice::cublaslt_workspace_bytes() const { return gemm_->workspace_bytes(); }

int cuda_device_count(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = fmt::format("{}: {}", cudaGetErrorName(err), cudaGetErrorString(err));
    cudaGetLastError();  // leave no error behind for the next CUDA call
    return 0;
  }
  if (count == 0 && why) *why = "the CUDA runtime reports 0 devices";
  return count;
}

CudaDevice& cuda_device(int index) {
  static std::mutex mu;
  // Never destroyed (see the header): the pointers stay reachable through this map until exit.
  static auto* devices = new std::map<int, CudaDevice*>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = devices->find(index);
  if (it != devices->end()) return *it->second;
  auto* device = new CudaDevice(index);
  devices->emplace(index, device);
  return *device;
}

cuda::CudnnAttention* CudaDevice::cudnn_attention() {
  std::call_once(cudnn_once_, [&] {
    std::string why;
    if (!cuda::attention_cudnn_available(&why)) {
      spdlog::debug("{}: cuDNN fused attention is not used ({}); attention runs on the engine's own kernels",
                    label_, why);
      return;
    }
    CudaDeviceGuard guard(index_);
    cudnn_ = std::make_unique<cuda::CudnnAttention>();
  });
  return cudnn_.get();
}

}  // namespace engine::rt
