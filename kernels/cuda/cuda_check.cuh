// One macro for every CUDA runtime, cuBLAS(Lt) and kernel-launch call: a failure throws engine::Error naming
// the call, the file and the line, and the library's own description of the error.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

namespace engine::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);

inline void check_cuda(cudaError_t err, const char* call, const char* file, int line) {
  if (err != cudaSuccess) throw_cuda_error(err, call, file, line);
}
inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, call, file, line);
}

}  // namespace engine::cuda

// CUDA_CHECK(cudaMemcpyAsync(...)); CUBLAS_CHECK(cublasLtMatmul(...)); after a <<<...>>> launch:
// CUDA_CHECK_LAUNCH();
#define CUDA_CHECK(call) ::engine::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) ::engine::cuda::check_cublas((call), #call, __FILE__, __LINE__)
#define CUDA_CHECK_LAUNCH() ::engine::cuda::check_cuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
