// CudaDevice: one NVIDIA GPU behind the rt::Device interface. It owns
//   - a compute stream (every kernel, GEMM, device-side copy and fill of this device runs on it, in host
//     order) and a copy stream (host-to-device uploads), both non-blocking (never ordered against the legacy
//     default stream), with the events that order one against the other;
//   - the caching, stream-ordered allocator (cuda_allocator.hpp: why stream-ordered frees are safe);
//   - the cuBLASLt handle, its 32 MiB workspace and the GEMM plan cache (kernels/cuda/gemm.cuh GemmRunner);
//   - two pinned host staging buffers (2 x 64 MiB, allocated on the first upload) through which uploads of
//     pageable memory stream, so that a model's weights go from an mmapped file to the GPU a chunk at a time
//     and never exist in full in host memory;
//   - the device's properties (name, SM count, compute capability, memory).
//
// Ordering rules (what the copies promise, see also rt::Device):
//   copy_from_host_async: the copy stream first waits for the compute stream's earlier work (the destination
//     may be a recycled block still read by it), then streams `src` through the staging buffers; the host
//     returns once the last chunk is staged (so `src` may be released), and the compute stream waits for
//     the transfer before any later kernel. The host-side staging (memcpy from pageable memory) of chunk i+1
//     overlaps the DMA of chunk i.
//   copy_from_host: copy_from_host_async, then waits for the copy stream.
//   copy_to_host: enqueued on the compute stream after the kernels that produce the data; waits for it.
//   copy_within, fill_zero: enqueued on the compute stream (stream order makes them look synchronous to
//     every caller: the only ways to see device memory are later kernels and copy_to_host).
//   synchronize: waits for both streams (and surfaces any asynchronous CUDA error).
//
// Construction makes the device current on the constructing thread (cudaSetDevice). Every entry point sets
// it for its own duration, so one process may hold several CudaDevices. This header needs no CUDA header:
// streams and handles are the CUDA types' underlying struct pointers (cudaStream_t is CUstream_st*).
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/runtime/device.hpp"
#include "engine/runtime/devices/cuda/cuda_allocator.hpp"
#include "engine/runtime/dtype.hpp"

struct CUstream_st;      // cudaStream_t
struct CUevent_st;       // cudaEvent_t
struct cublasLtContext;  // cublasLtHandle_t

namespace engine::cuda {
class GemmRunner;
class CudnnAttention;
}  // namespace engine::cuda

namespace engine::rt {

struct CudaDeviceProperties {
  std::string name;         // e.g. "NVIDIA H200"
  int sm_count = 0;         // streaming multiprocessors
  int cc_major = 0;         // compute capability, e.g. 9
  int cc_minor = 0;         //   and 0 for sm_90
  size_t total_memory = 0;  // bytes of device memory
};

class CudaDevice final : public Device {
 public:
  static constexpr size_t kStagingBytes = size_t(64) << 20;          // each of the 2 pinned buffers
  static constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;  // cuBLASLt workspace

  // CUDA device `index` (0-based among the visible devices). Throws engine::Error when it cannot be used.
  explicit CudaDevice(
      int index, const CudaAllocatorOptions& allocator_options = CudaAllocatorOptions::from_environment());
  ~CudaDevice() override;  // waits for both streams, then releases everything it owns
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  DeviceType type() const override { return DeviceType::CUDA; }
  int index() const override { return index_; }

  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;  // stream-ordered on the compute stream
  MemoryStats memory_stats() const override;
  void reset_peak_memory() override;
  size_t total_memory() const override { return props_.total_memory; }
  void empty_cache() override;

  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_within(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* dst, size_t bytes) override;
  void synchronize() override;

  // The kernel table of the compute policy in force: bf16 (the default: bf16 storage and tensor-core GEMMs
  // with fp32 accumulation, f32 when every input of an op is f32) or f32 (every op converts its inputs to
  // f32: train.dtype = "fp32" over bf16 weights).
  const KernelTable& kernels() const override;
  void set_compute_dtype(DType dtype);
  DType compute_dtype() const { return compute_dtype_; }
  void* stream() override { return compute_; }
  void* compute_stream() override { return compute_; }
  void* copy_stream() override { return copy_; }
  void copy_from_host_async(void* dst, const void* src, size_t bytes) override;
  double gemm_ceiling_flops() override;

  // Activation offload: pinned host memory (cudaHostAlloc) and copies on a stream of their own (made on first
  // use, so that offload traffic never queues ahead of uploads on the copy stream); fences are events.
  void* host_pinned_allocate(size_t bytes) override;
  void host_pinned_free(void* ptr, size_t bytes) override;
  void* copy_to_host_fenced(void* host_dst, const void* src, size_t bytes) override;
  void* copy_from_host_fenced(void* dst, const void* host_src, size_t bytes) override;
  void compute_wait(void* fence) override;
  void fence_release(void* fence) override;
  bool fence_done(void* fence) override;

  // Properties (what the host API gives plugins).
  const CudaDeviceProperties& properties() const { return props_; }
  const std::string& name() const { return props_.name; }
  int sm_count() const { return props_.sm_count; }
  int compute_capability() const { return props_.cc_major * 10 + props_.cc_minor; }  // e.g. 90
  // "cuda:0 (NVIDIA H200)", for messages.
  const std::string& label() const { return label_; }

  // Typed streams (cudaStream_t).
  CUstream_st* compute_cuda_stream() const { return compute_; }
  CUstream_st* copy_cuda_stream() const { return copy_; }

  // cuBLASLt: the handle (cublasLtHandle_t), its workspace (valid for work on the compute stream only) and
  // the GEMM runner that owns both together with the plan cache.
  cublasLtContext* cublaslt_handle() const;
  void* cublaslt_workspace() const;
  size_t cublaslt_workspace_bytes() const;
  cuda::GemmRunner& gemm_runner() { return *gemm_; }

  CudaCachingAllocator& allocator() { return *allocator_; }

  // A device copy of `bytes` of host memory that stays valid as long as the device (a small table a kernel
  // reads, such as RoPE's inverse frequencies): uploaded on the first call with these bytes (ordered before
  // the compute stream's later work), the same pointer for every later call with the same bytes, wherever
  // they live on the host. Thread-safe; the copies count as live memory.
  const void* constant_buffer(const void* host, size_t bytes);

  // cuDNN's fused attention for this device (kernels/cuda/attention_cudnn.hpp), made on first use; nullptr
  // when this build or this machine cannot use it (the reason is logged once at debug level).
  cuda::CudnnAttention* cudnn_attention();
  // train.deterministic: false lets cuDNN's attention backward take its non-deterministic algorithm.
  void set_deterministic(bool deterministic) override { deterministic_ = deterministic; }
  bool deterministic() const override { return deterministic_; }

 private:
  void ensure_staging();  // caller holds copy_mu_
  // The fenced copy of `bytes` (direction `kind`, a cudaMemcpyKind) on offload_, after the compute stream's work.
  void* fenced_copy(void* dst, const void* src, size_t bytes, int kind);
  void release() noexcept;

  bool deterministic_ = true;
  int index_;
  CudaDeviceProperties props_;
  std::string label_;
  CUstream_st* compute_ = nullptr;
  CUstream_st* copy_ = nullptr;
  CUevent_st* compute_ready_ = nullptr;  // recorded on compute_; copy_ waits before writing
  CUevent_st* copy_done_ = nullptr;      // recorded on copy_; compute_ waits before later kernels
  CUevent_st* staging_free_[2] = {};     // recorded on copy_ after the DMA out of staging_[i]
  CUstream_st* offload_ = nullptr;       // activation offload copies (made on first use)
  CUevent_st* offload_ready_ = nullptr;  // recorded on compute_; offload_ waits before each copy
  std::mutex offload_mu_;                // offload_, offload_ready_ and free_fences_
  std::vector<CUevent_st*> free_fences_;  // released fences, reused
  void* staging_[2] = {};                // pinned host buffers of kStagingBytes (lazily allocated)
  std::mutex copy_mu_;                   // the staging buffers and the copy events
  std::unique_ptr<CudaCachingAllocator> allocator_;
  std::unique_ptr<cuda::GemmRunner> gemm_;
  DType compute_dtype_ = ENG_BF16;
  std::once_flag ceiling_once_;
  double gemm_ceiling_ = 0.0;
  std::once_flag cudnn_once_;
  std::unique_ptr<cuda::CudnnAttention> cudnn_;
  std::mutex constants_mu_;
  std::unordered_map<std::string, void*> constants_;  // content bytes -> device copy
};

// Usable CUDA devices (cudaGetDeviceCount); 0 when none, with the reason in *why (the CUDA runtime's error:
// no device, driver too old, ...).
int cuda_device_count(std::string* why = nullptr);

// The process-wide CudaDevice for `index`, created on first use and kept until the process exits (it is
// never destroyed, so no static destructor runs after the CUDA runtime has shut down). Throws engine::Error
// when `index` is not a visible device.
CudaDevice& cuda_device(int index);

}  // namespace engine::rt
