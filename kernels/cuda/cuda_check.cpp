#include "kernels/cuda/cuda_check.cuh"

#include "engine/core/error.hpp"

namespace engine::cuda {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  fail("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(err), cudaGetErrorString(err), call, file, line);
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  fail("cuBLAS error {} ({}) in {} at {}:{}", cublasGetStatusName(status), cublasGetStatusString(status), call,
       file, line);
}

}  // namespace engine::cuda
