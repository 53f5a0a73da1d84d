// GEMM through cuBLASLt: row-major C (M, N) = alpha * op(A) op(B) + beta * C [+ bias (N) on every row],
// strided-batched, fp32 accumulation, the algorithm chosen once per problem shape and cached.
//
// Math and layout (row-major, the CPU reference is kernels/cpu/gemm.hpp with the same arguments):
//   op(A) is (M, K): A is (M, K) with leading dimension lda, or (K, M) when trans_a.
//   op(B) is (K, N): B is (K, N) with leading dimension ldb, or (N, K) when trans_b.
//   C is (M, N) with leading dimension ldc. bias (optional) is (N) of C's type, added after the product
//   (cuBLASLt's BIAS epilogue): C[i][j] = alpha * sum_k op(A)[i][k] op(B)[k][j] + beta * C[i][j] + bias[j].
//   Batches: batch i uses A + i * stride_a, B + i * stride_b, C + i * stride_c (element strides); a stride of
//   0 for A or B broadcasts that operand to every batch (e.g. one weight for every sequence). The bias is the
//   same for every batch.
//
// Why this shape: cuBLASLt is column-major. A row-major (R, C) matrix with leading dimension ld is, byte for
// byte, the column-major (C, R) matrix with the same ld, its transpose. So the row-major product is computed
// as the column-major C^T (N, M) = op(B)^T op(A)^T: cuBLAS's first operand is our B, its second is our A, and
// no data moves. The bias of length N then runs along the rows of the column-major D, which is exactly what
// the BIAS epilogue broadcasts.
//
// Numbers: CUBLAS_COMPUTE_32F with fp32 scale type for every type pair: bf16 inputs use tensor cores with
// fp32 accumulation, fp32 inputs use true fp32 (no TF32), so fp32 results match the CPU within 1e-5. Split-K
// reductions are restricted to ones that accumulate in the compute type (never in a bf16 output), and the
// cached algorithm makes a given problem run the same kernels every time: results are bitwise repeatable.
// K = 0 gives C = beta * C + bias (a GEMM of K = 1 on zeros from the workspace; cuBLASLt refuses K = 0).
//
// Type pairs (A and B always share a type): f32 x f32 -> f32, bf16 x bf16 -> bf16, bf16 x bf16 -> f32.
// f32 inputs with a bf16 output are not a cuBLASLt combination; GemmRunner::supports says so.
//
// A GemmRunner owns one cuBLASLt handle, one workspace (cudaMalloc'd once, at construction) and the plan
// cache (descriptors + algorithm per problem key). The workspace is shared by every call, so all calls on one
// runner must be on one stream (the device's compute stream) or otherwise ordered; the runner itself is
// thread-safe (one mutex around the cache and the enqueue).
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>

namespace engine::cuda {

enum class GemmType : int32_t { F32 = 0, BF16 = 1 };

const char* gemm_type_name(GemmType t);

template <typename T>
constexpr GemmType gemm_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>, "gemm: float or __nv_bfloat16");
  return std::is_same_v<T, float> ? GemmType::F32 : GemmType::BF16;
}

// One strided-batched GEMM without its matrices (see the file comment for the math). The bias pointer, when
// set, is a device pointer to N elements of bias_type, which must be c_type (cuBLASLt's BIAS epilogue reads
// the bias in the output's type).
struct GemmDesc {
  bool trans_a = false;
  bool trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  float alpha = 1.0f;
  float beta = 0.0f;
  int64_t batch = 1;     // number of GEMMs (<= INT32_MAX)
  int64_t stride_a = 0;  // elements between consecutive A matrices; 0 broadcasts A
  int64_t stride_b = 0;  // elements between consecutive B matrices; 0 broadcasts B
  int64_t stride_c = 0;  // elements between consecutive C matrices (must not overlap when batch > 1)
  GemmType ab_type = GemmType::F32;  // type of A and B
  GemmType c_type = GemmType::F32;   // type of C
  const void* bias = nullptr;        // (N) or nullptr for no bias
  GemmType bias_type = GemmType::F32;
};

class GemmRunner {
 public:
  static constexpr size_t kDefaultWorkspaceBytes = size_t(32) << 20;  // 32 MiB

  // A cuBLASLt handle and a workspace of `workspace_bytes` on the current CUDA device.
  explicit GemmRunner(size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  // Enqueues C = alpha * op(A) op(B) + beta * C [+ bias] on `stream` (A, B, C device pointers of the types
  // in `d`). Throws engine::Error for invalid arguments (negative sizes, leading dimensions too small, an
  // unsupported type pair, a bias type other than C's, overlapping batched outputs) and for cuBLASLt
  // failures. M = 0, N = 0 or batch = 0 enqueue nothing.
  void run(cudaStream_t stream, const GemmDesc& d, const void* A, const void* B, void* C);

  // Whether cuBLASLt multiplies this type pair; otherwise the reason in *why.
  static bool supports(GemmType ab_type, GemmType c_type, std::string* why = nullptr);

  cublasLtHandle_t handle() const { return handle_; }
  void* workspace() const { return workspace_; }
  size_t workspace_bytes() const { return workspace_bytes_; }
  // Plans (descriptors + algorithm) cached so far; one per distinct problem key.
  size_t cached_plans() const;

 private:
  // A descriptor with its matrices.
  struct GemmProblem : GemmDesc {
    const void* A = nullptr;
    const void* B = nullptr;
    void* C = nullptr;
  };
  struct Key {
    bool trans_a, trans_b, bias;
    GemmType ab_type, c_type;
    int64_t M, N, K, lda, ldb, ldc, batch, stride_a, stride_b, stride_c;
    uint32_t align_a, align_b, align_c, align_bias;  // bytes: the pointers' (and strides') alignment
    size_t workspace;                                // bytes the algorithm may use
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Plan;

  // The rest runs with mu_ held and on checked arguments (M, N, K, batch > 0).
  // One cublasLtMatmul for `p` with the algorithm allowed `ws_bytes` of workspace at `ws`; a batched problem
  // that has no batched algorithm runs as one GEMM per batch.
  void enqueue(const GemmProblem& p, void* ws, size_t ws_bytes, cudaStream_t stream);
  void run_k0(const GemmProblem& p, cudaStream_t stream);  // K = 0: C = beta * C + bias
  // The plan for `key` (created and cached on first use; `p` gives the bias pointer the heuristic looks at);
  // nullptr when cuBLASLt has no algorithm for it.
  Plan* plan_for(const Key& key, const GemmProblem& p);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  mutable std::mutex mu_;
  std::unordered_map<Key, std::unique_ptr<Plan>, KeyHash> plans_;
};

// Typed convenience over GemmRunner::run, for TAB in {float, __nv_bfloat16} and TC in {float,
// __nv_bfloat16} (not float inputs with a bf16 output). Explicitly instantiated in gemm.cpp.
template <typename TAB, typename TC>
void gemm(GemmRunner& runner, cudaStream_t stream, bool trans_a, bool trans_b, int64_t M, int64_t N,
          int64_t K, float alpha, const TAB* A, int64_t lda, const TAB* B, int64_t ldb, float beta, TC* C,
          int64_t ldc, const TC* bias = nullptr, int64_t batch = 1, int64_t stride_a = 0,
          int64_t stride_b = 0, int64_t stride_c = 0);

}  // namespace engine::cuda
