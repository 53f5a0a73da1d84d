// Reductions on the GPU: sum of all elements, sum of squares (the global gradient norm), count of non-finite
// values, and column sums of a (rows, cols) matrix (with an elementwise product for the gradients of a
// broadcast multiply). Mirrors kernels/cpu/reduce.hpp. Every result is bitwise repeatable run to run: fixed
// blocks, partials combined in a fixed order, no float atomics.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace engine::cuda {

// Device workspace (bytes) of sum_all / sum_squares for n elements: 0 when one block does it (n <= 4096),
// else at most 8 KiB. A null workspace is fine when this is 0.
size_t scalar_reduce_workspace_bytes(int64_t n);

// *out = (accumulate ? *out : 0) + sum_i x[i], accumulated in f64 and stored as f32. T: float or bf16.
template <typename T>
void sum_all(cudaStream_t stream, const T* x, int64_t n, float* out, bool accumulate, void* workspace);
// *out = (accumulate ? *out : 0) + sum_i x[i]^2. Launched once per tensor on one stream with accumulate after
// the first, it gives the squared global gradient norm, deterministically.
template <typename T>
void sum_squares(cudaStream_t stream, const T* x, int64_t n, float* out, bool accumulate, void* workspace);
// *out = (accumulate ? *out : 0) + #{i : x[i] is NaN or +-Inf}. Integer atomics (order-free, exact).
template <typename T>
void count_nonfinite(cudaStream_t stream, const T* x, int64_t n, int* out, bool accumulate);

// Device workspace (bytes) of sum_rows / sum_rows_product: 0 when rows <= 512, else
// ceil(rows / 512) * cols * 8.
size_t sum_rows_workspace_bytes(int64_t rows, int64_t cols);
// out[j] = sum_i x[i, j]             x: (rows, cols), out: (cols); f64 accumulation, one rounding to T
template <typename T>
void sum_rows(cudaStream_t stream, const T* x, int64_t rows, int64_t cols, T* out, void* workspace);
// out[j] = sum_i x[i, j] * y[i, j]   x, y: (rows, cols), out: (cols)
template <typename T>
void sum_rows_product(cudaStream_t stream, const T* x, const T* y, int64_t rows, int64_t cols, T* out,
                      void* workspace);

}  // namespace engine::cuda
