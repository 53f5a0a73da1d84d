// gemm_algos: for each GEMM shape of a Qwen2.5-7B LoRA training step, the time of cuBLASLt's first
// heuristic algorithm (what kernels/cuda/gemm.cpp runs) against the best of its first 16, and the shape's
// bandwidth and FLOP limits measured on this GPU in the same run. Measures what an autotuner would gain.
//   nvcc -O2 -arch=sm_90a -std=c++17 bench/gemm_algos/gemm_algos.cu -lcublasLt -o gemm_algos && ./gemm_algos
// Row-major shapes as the engine writes them: C (M, N) = op(A) op(B), bf16 inputs, bf16 or f32 output.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#define CK(x)                                                                             \
  do {                                                                                    \
    auto e_ = (x);                                                                        \
    if (e_ != 0) {                                                                        \
      std::fprintf(stderr, "%s:%d: %s failed: %d\n", __FILE__, __LINE__, #x, int(e_));    \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

struct Shape {
  const char* what;
  bool ta, tb;
  long M, N, K;
  bool f32_out;
  float beta;
};

static double time_ms(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la,
                      cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc, const cublasLtMatmulAlgo_t* algo,
                      const void* A, const void* B, void* C, float beta, void* ws, size_t ws_bytes,
                      cudaStream_t s, int reps) {
  float alpha = 1.0f;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int i = 0; i < 3; ++i)
    if (cublasLtMatmul(h, desc, &alpha, B, la, A, lb, &beta, C, lc, C, lc, algo, ws, ws_bytes, s) != 0)
      return -1;
  cudaEventRecord(e0, s);
  for (int i = 0; i < reps; ++i) cublasLtMatmul(h, desc, &alpha, B, la, A, lb, &beta, C, lc, C, lc, algo, ws, ws_bytes, s);
  cudaEventRecord(e1, s);
  cudaEventSynchronize(e1);
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms / reps;
}

int main(int argc, char** argv) {
  const long tokens_list[] = {2048, 8192};
  const long r = 16, H = 3584, I = 18944, KV = 512;
  cublasLtHandle_t h;
  CK(cublasLtCreate(&h));
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  const size_t ws_bytes = size_t(32) << 20;
  void* ws;
  CK(cudaMalloc(&ws, ws_bytes));
  const size_t big = size_t(8192) * I * 4;  // the largest operand or output, in bytes
  void *A, *B, *C;
  CK(cudaMalloc(&A, big));
  CK(cudaMalloc(&B, big));
  CK(cudaMalloc(&C, big));
  CK(cudaMemset(A, 0, big));
  CK(cudaMemset(B, 0, big));
  CK(cudaMemset(C, 0, big));

  // The ceilings of this GPU, measured now: HBM copy bandwidth and a bf16 8192^3 GEMM's rate.
  float ms = 0;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  cudaMemcpyAsync(B, A, big / 2, cudaMemcpyDeviceToDevice, s);
  cudaEventRecord(e0, s);
  for (int i = 0; i < 10; ++i) cudaMemcpyAsync(B, A, big / 2, cudaMemcpyDeviceToDevice, s);
  cudaEventRecord(e1, s);
  cudaEventSynchronize(e1);
  cudaEventElapsedTime(&ms, e0, e1);
  const double bw = 2.0 * (big / 2) * 10 / (ms * 1e-3);  // bytes read + written per second

  std::printf("# HBM copy bandwidth %.0f GB/s\n", bw / 1e9);
  std::printf("%-28s %6s %6s %6s %3s %10s %10s %6s %10s %10s %8s\n", "gemm", "M", "N", "K", "out", "top1_us",
              "best_us", "algos", "bw_us", "flop_us", "gain");
  double total_top1 = 0, total_best = 0;
  double ceiling = 800e12;  // replaced by the first row's measured rate (a bf16 8192^3 GEMM)
  for (long T : tokens_list) {
    std::vector<Shape> v = {
        {"ceiling 8192^3", false, true, 8192, 8192, 8192, false, 0.f},
        {"base q/o fwd x@W^T", false, true, T, H, H, false, 0.f},
        {"base k/v fwd", false, true, T, KV, H, false, 0.f},
        {"base gate/up fwd", false, true, T, I, H, false, 0.f},
        {"base down fwd", false, true, T, H, I, false, 0.f},
        {"base q/o dx=g@W", false, false, T, H, H, false, 0.f},
        {"base k/v dx", false, false, T, H, KV, false, 0.f},
        {"base gate/up dx", false, false, T, H, I, false, 0.f},
        {"base down dx", false, false, T, I, H, false, 0.f},
        {"lora A fwd x@A^T (in=H)", false, true, T, r, H, false, 0.f},
        {"lora A fwd x@A^T (in=I)", false, true, T, r, I, false, 0.f},
        {"lora B fwd h@B^T (out=H)", false, true, T, H, r, false, 0.f},
        {"lora B fwd (out=KV)", false, true, T, KV, r, false, 0.f},
        {"lora B fwd (out=I)", false, true, T, I, r, false, 0.f},
        {"lora B fwd +C (out=I)", false, true, T, I, r, false, 1.f},
        {"lora B fwd +C (out=H)", false, true, T, H, r, false, 1.f},
        {"lora dh=g@B (out=H)", false, false, T, r, H, false, 0.f},
        {"lora dh=g@B (out=I)", false, false, T, r, I, false, 0.f},
        {"lora dB=g^T@h (out=H)", true, false, H, r, T, false, 0.f},
        {"lora dB=g^T@h (out=I)", true, false, I, r, T, false, 0.f},
        {"lora dx=dh@A (in=H)", false, false, T, H, r, false, 0.f},
        {"lora dx=dh@A +C (in=H)", false, false, T, H, r, false, 1.f},
        {"lora dx=dh@A (in=I)", false, false, T, I, r, false, 0.f},
        {"lora dA=dh^T@x (in=H)", true, false, r, H, T, false, 0.f},
        {"lora dA=dh^T@x (in=I)", true, false, r, I, T, false, 0.f},
    };
    for (const Shape& sh : v) {
      cublasLtMatmulDesc_t desc;
      CK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      cublasOperation_t op_a = sh.tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = sh.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
      CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
      CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
      const long lda = sh.ta ? sh.M : sh.K, ldb = sh.tb ? sh.K : sh.N, ldc = sh.N;
      const cudaDataType_t ct = sh.f32_out ? CUDA_R_32F : CUDA_R_16BF;
      cublasLtMatrixLayout_t la, lb, lc;
      CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, sh.tb ? sh.K : sh.N, sh.tb ? sh.N : sh.K, ldb));
      CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, sh.ta ? sh.M : sh.K, sh.ta ? sh.K : sh.M, lda));
      CK(cublasLtMatrixLayoutCreate(&lc, ct, sh.N, sh.M, ldc));
      cublasLtMatmulPreference_t pref;
      CK(cublasLtMatmulPreferenceCreate(&pref));
      uint64_t mws = ws_bytes;
      uint32_t red = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
      CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &mws, sizeof(mws)));
      CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &red, sizeof(red)));
      cublasLtMatmulHeuristicResult_t res[16];
      int found = 0;
      CK(cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, lc, lc, pref, 16, res, &found));
      const double flops = 2.0 * sh.M * sh.N * sh.K;
      const int reps = flops > 1e11 ? 20 : 200;
      double top1 = -1, best = 1e30;
      for (int i = 0; i < found; ++i) {
        if (res[i].state != 0) continue;
        double t = time_ms(h, desc, la, lb, lc, &res[i].algo, A, B, C, sh.beta, ws, ws_bytes, s, reps);
        if (t < 0) continue;
        if (i == 0) top1 = t;
        best = std::min(best, t);
      }
      const double bytes = 2.0 * (sh.M * sh.K + sh.K * sh.N) + (sh.f32_out ? 4.0 : 2.0) * sh.M * sh.N *
                                                                  (sh.beta != 0.f ? 2 : 1);
      if (sh.M == 8192 && sh.N == 8192 && sh.K == 8192) {
        ceiling = flops / (best * 1e-3);
        std::printf("# bf16 GEMM ceiling %.0f TFLOP/s (best algorithm, 8192^3)\n", ceiling / 1e12);
      }
      const double bw_us = bytes / bw * 1e6, flop_us = flops / ceiling * 1e6;
      std::printf("%-28s %6ld %6ld %6ld %3s %10.1f %10.1f %6d %10.1f %10.1f %7.2fx\n", sh.what, sh.M, sh.N, sh.K,
                  sh.f32_out ? "f32" : "bf", top1 * 1e3, best * 1e3, found, bw_us, flop_us, top1 / best);
      if (sh.M != 8192 || sh.N != 8192 || sh.K != 8192) {
        total_top1 += top1;
        total_best += best;
      }
      cublasLtMatmulPreferenceDestroy(pref);
      cublasLtMatrixLayoutDestroy(la);
      cublasLtMatrixLayoutDestroy(lb);
      cublasLtMatrixLayoutDestroy(lc);
      cublasLtMatmulDescDestroy(desc);
    }
  }
  std::printf("# sum over the listed shapes: top1 %.1f us, best %.1f us\n", total_top1 * 1e3, total_best * 1e3);
  return 0;
}
