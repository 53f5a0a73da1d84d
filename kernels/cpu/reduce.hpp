// Reductions: the sum of all elements, and column sums of a (rows, cols) matrix (bias gradients, gradients of
// broadcast operands).
//
// Determinism: sum_all adds fixed blocks of kSumBlock elements (each in order, in double), stores one partial
// per block and adds the partials in block order; column sums give each column to one thread, which adds the
// rows in order. Neither depends on the number of threads, so results are bitwise identical run to run and
// across ENGINE_NUM_THREADS settings.
#pragma once

#include <cstdint>

namespace engine::cpu {

class ThreadPool;

// sum of x[0..n), accumulated in double
template <typename T>
double sum_all(ThreadPool& pool, const T* x, int64_t n);
// out[j] = sum_i x[i, j]            x: (rows, cols), out: (cols)
template <typename T>
void sum_rows(ThreadPool& pool, const T* x, int64_t rows, int64_t cols, T* out);
// out[j] = sum_i x[i, j] * y[i, j]  x, y: (rows, cols), out: (cols)
template <typename T>
void sum_rows_product(ThreadPool& pool, const T* x, const T* y, int64_t rows, int64_t cols, T* out);

}  // namespace engine::cpu
