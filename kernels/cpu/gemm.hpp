// GEMM: C = alpha * op(A) op(B) + beta * C through OpenBLAS (cblas_sgemm / cblas_dgemm), row-major.
//
// op(A) is (M, K): A is (M, K) with leading dimension lda, or (K, M) when trans_a. op(B) is (K, N): B is (K,
// N), or (N, K) when trans_b. C is (M, N) with leading dimension ldc.
//
// Threads: OpenBLAS (pthread build) runs its own threads. These functions must be called from the calling
// thread of an op, never from inside a ThreadPool worker. The first call fixes OpenBLAS's thread count to the
// pool size (ENGINE_NUM_THREADS / all cores) for the whole process; OpenBLAS level-3 drivers split M and N
// but never K among threads, so with a fixed thread count every output element is summed in one fixed order
// and results are bitwise reproducible run to run.
#pragma once

#include <cstdint>

namespace engine::cpu {

class ThreadPool;

// Sets OpenBLAS's thread count once per process (later calls with another count are ignored, so that the
// summation order never changes inside a run). Called by gemm() with the pool's size.
void configure_blas_threads(int threads);

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace engine::cpu
