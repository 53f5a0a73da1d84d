// CudaDeviceGuard: makes a CUDA device current on the calling thread for a scope and restores the previous
// one. Every CudaDevice and CudaCachingAllocator entry point takes one, so that a process holding cuda:0 and
// cuda:1 allocates and copies on the right GPU whichever was current before. Internal to devices/cuda.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.cuh"

namespace engine::rt {

class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device) {
    CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device)
      CUDA_CHECK(cudaSetDevice(device));
    else
      previous_ = -1;
  }
  ~CudaDeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;  // the device to restore, or -1 when it was already current
};

}  // namespace engine::rt
