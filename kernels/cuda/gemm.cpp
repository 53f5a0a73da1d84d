// GemmRunner: cuBLASLt GEMMs for row-major operands (the math, layout and numbers are in gemm.cuh).
//
// Per call: validate, look the problem key up in the plan cache (transposes, sizes, leading dimensions, batch
// and strides, types, epilogue, pointer alignments and workspace size: everything
// cublasLtMatmulAlgoGetHeuristic sees), set the bias pointer on the cached matmul descriptor and enqueue one
// cublasLtMatmul. A problem the heuristic has no batched algorithm for (a broadcast operand with stride 0 can
// be one) runs as a loop of single GEMMs on the same stream.
#include "kernels/cuda/gemm.cuh"

#include <algorithm>
#include <functional>

#include "engine/core/error.hpp"
#include "kernels/cuda/cuda_check.cuh"

namespace engine::cuda {

namespace {

size_t dtype_bytes(GemmType t) { return t == GemmType::F32 ? 4 : 2; }
cudaDataType_t cuda_type(GemmType t) { return t == GemmType::F32 ? CUDA_R_32F : CUDA_R_16BF; }

// The largest power of two (<= 256, the heuristic's default assumption) that divides the address of every
// batch's matrix: the base pointer and, when batched, the batch stride in bytes.
uint32_t alignment_of(const void* p, int64_t stride_elems, size_t elem_bytes, int64_t batch) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  if (batch > 1 && stride_elems != 0) v |= static_cast<uintptr_t>(stride_elems) * elem_bytes;
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

void set_layout_batch(cublasLtMatrixLayout_t layout, int64_t batch, int64_t stride) {
  if (batch <= 1) return;
  const int32_t count = static_cast<int32_t>(batch);
  CUBLAS_CHECK(
      cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
  CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                sizeof(stride)));
}

std::string describe(const GemmDesc& p) {
  return fmt::format(
      "gemm M={} N={} K={} trans_a={} trans_b={} lda={} ldb={} ldc={} A/B {} C {} bias {} batch {} strides "
      "{}/{}/{}",
      p.M, p.N, p.K, p.trans_a, p.trans_b, p.lda, p.ldb, p.ldc, gemm_type_name(p.ab_type),
      gemm_type_name(p.c_type), p.bias ? "yes" : "no", p.batch, p.stride_a, p.stride_b, p.stride_c);
}

}  // namespace

const char* gemm_type_name(GemmType t) {
  switch (t) {
    case GemmType::F32:
      return "f32";
    case GemmType::BF16:
      return "bf16";
  }
  return "unknown";
}

struct GemmRunner::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t layout_a = nullptr;  // cuBLAS's first operand: our B
  cublasLtMatrixLayout_t layout_b = nullptr;  // cuBLAS's second operand: our A
  cublasLtMatrixLayout_t layout_c = nullptr;  // C and D (in place)
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;  // false: the heuristic found none (cached so it is asked once)

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (layout_c) cublasLtMatrixLayoutDestroy(layout_c);
    if (layout_b) cublasLtMatrixLayoutDestroy(layout_b);
    if (layout_a) cublasLtMatrixLayoutDestroy(layout_a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

size_t GemmRunner::KeyHash::operator()(const Key& k) const {
  size_t h = 0;
  auto mix = [&h](uint64_t v) {
    h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  };
  mix((uint64_t(k.trans_a) << 0) | (uint64_t(k.trans_b) << 1) | (uint64_t(k.bias) << 2) |
      (uint64_t(k.ab_type) << 3) | (uint64_t(k.c_type) << 5));
  for (int64_t v : {k.M, k.N, k.K, k.lda, k.ldb, k.ldc, k.batch, k.stride_a, k.stride_b, k.stride_c})
    mix(static_cast<uint64_t>(v));
  mix((uint64_t(k.align_a) << 48) | (uint64_t(k.align_b) << 32) | (uint64_t(k.align_c) << 16) | k.align_bias);
  mix(k.workspace);
  return h;
}

GemmRunner::GemmRunner(size_t workspace_bytes) : workspace_bytes_(workspace_bytes) {
  CUBLAS_CHECK(cublasLtCreate(&handle_));
  if (workspace_bytes_ > 0) {
    const cudaError_t err = cudaMalloc(&workspace_, workspace_bytes_);
    if (err != cudaSuccess) {
      cudaGetLastError();
      cublasLtDestroy(handle_);
      fail_with(ENG_ERR_OUT_OF_MEMORY, "cannot allocate the {} byte cuBLASLt workspace: {}", workspace_bytes_,
                cudaGetErrorString(err));
    }
  }
}

GemmRunner::~GemmRunner() {
  plans_.clear();
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

size_t GemmRunner::cached_plans() const {
  std::lock_guard<std::mutex> lock(mu_);
  return plans_.size();
}

bool GemmRunner::supports(GemmType ab_type, GemmType c_type, std::string* why) {
  if (ab_type == GemmType::F32 && c_type == GemmType::BF16) {
    if (why)
      *why =
          "cuBLASLt has no f32 x f32 -> bf16 GEMM (with CUBLAS_COMPUTE_32F an f32 input needs an f32 "
          "output); "
          "compute into an f32 buffer and cast it, or give bf16 inputs";
    return false;
  }
  return true;
}

void GemmRunner::run(cudaStream_t stream, const GemmDesc& d, const void* A, const void* B, void* C) {
  GemmProblem p;
  static_cast<GemmDesc&>(p) = d;
  p.A = A;
  p.B = B;
  p.C = C;
  if (p.M < 0 || p.N < 0 || p.K < 0 || p.batch < 0)
    fail("{}: sizes and the batch count must not be negative", describe(p));
  if (p.batch > INT32_MAX) fail("{}: cuBLASLt takes at most {} batches", describe(p), INT32_MAX);
  std::string why;
  if (!supports(p.ab_type, p.c_type, &why)) fail("{}: {}", describe(p), why);
  if (p.bias != nullptr && p.bias_type != p.c_type)
    fail(
        "{}: a {} bias with a {} output; cuBLASLt's bias epilogue reads the bias in the output's type, so "
        "cast the bias to {}",
        describe(p), gemm_type_name(p.bias_type), gemm_type_name(p.c_type), gemm_type_name(p.c_type));
  if (p.M == 0 || p.N == 0 || p.batch == 0) return;
  // Row-major leading dimensions: the length of a stored row, at least 1.
  const int64_t min_lda = std::max<int64_t>(1, p.trans_a ? p.M : p.K);
  const int64_t min_ldb = std::max<int64_t>(1, p.trans_b ? p.K : p.N);
  const int64_t min_ldc = std::max<int64_t>(1, p.N);
  if (p.lda < min_lda || p.ldb < min_ldb || p.ldc < min_ldc)
    fail("{}: leading dimensions too small (row-major: lda >= {}, ldb >= {}, ldc >= {})", describe(p),
         min_lda, min_ldb, min_ldc);
  if (p.C == nullptr || (p.K > 0 && (p.A == nullptr || p.B == nullptr)))
    fail("{}: null matrix pointer", describe(p));
  if (p.batch > 1) {
    if (p.stride_a < 0 || p.stride_b < 0 || p.stride_c < 0)
      fail("{}: batch strides must be >= 0", describe(p));
    if (p.stride_c < (p.M - 1) * p.ldc + p.N)
      fail("{}: batched outputs overlap (stride_c must be >= (M - 1) * ldc + N = {})", describe(p),
           (p.M - 1) * p.ldc + p.N);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (p.K == 0)
    run_k0(p, stream);
  else
    enqueue(p, workspace_, workspace_bytes_, stream);
}

void GemmRunner::run_k0(const GemmProblem& p, cudaStream_t stream) {
  // op(A) op(B) is an (M, N) matrix of zeros. cuBLASLt rejects K = 0, so run K = 1 on a zero vector Z in the
  // first half of the workspace: op(A) = Z as (M', 1), op(B) = Z as (1, N'), both broadcast over batches, in
  // tiles of at most `cap` rows and columns; beta * C and the bias epilogue then give the result exactly. The
  // algorithm gets the second half of the workspace, so the zeros survive the call.
  const size_t half = workspace_bytes_ / 2;
  const size_t elem = dtype_bytes(p.ab_type), c_elem = dtype_bytes(p.c_type);
  const int64_t cap = static_cast<int64_t>(half / elem);
  if (cap < 1) fail("{}: K = 0 needs a cuBLASLt workspace (this runner has none)", describe(p));
  const int64_t zeros = std::min<int64_t>(cap, std::max(p.M, p.N));
  CUDA_CHECK(cudaMemsetAsync(workspace_, 0, static_cast<size_t>(zeros) * elem, stream));
  for (int64_t r0 = 0; r0 < p.M; r0 += cap) {
    for (int64_t c0 = 0; c0 < p.N; c0 += cap) {
      GemmProblem q = p;
      q.trans_a = q.trans_b = false;
      q.M = std::min(cap, p.M - r0);
      q.N = std::min(cap, p.N - c0);
      q.K = 1;
      q.alpha = 1.0f;
      q.A = workspace_;
      q.lda = 1;
      q.B = workspace_;
      q.ldb = q.N;
      q.stride_a = q.stride_b = 0;
      q.C = static_cast<char*>(p.C) + static_cast<size_t>(r0 * p.ldc + c0) * c_elem;
      q.bias = p.bias ? static_cast<const char*>(p.bias) + static_cast<size_t>(c0) * c_elem : nullptr;
      enqueue(q, static_cast<char*>(workspace_) + half, workspace_bytes_ - half, stream);
    }
  }
}

void GemmRunner::enqueue(const GemmProblem& p, void* ws, size_t ws_bytes, cudaStream_t stream) {
  const size_t elem = dtype_bytes(p.ab_type), c_elem = dtype_bytes(p.c_type);
  const int64_t batch = p.batch;
  const Key key{p.trans_a,
                p.trans_b,
                p.bias != nullptr,
                p.ab_type,
                p.c_type,
                p.M,
                p.N,
                p.K,
                p.lda,
                p.ldb,
                p.ldc,
                batch,
                batch > 1 ? p.stride_a : 0,
                batch > 1 ? p.stride_b : 0,
                batch > 1 ? p.stride_c : 0,
                alignment_of(p.A, p.stride_a, elem, batch),
                alignment_of(p.B, p.stride_b, elem, batch),
                alignment_of(p.C, p.stride_c, c_elem, batch),
                p.bias ? alignment_of(p.bias, 0, c_elem, 1) : 0u,
                ws_bytes};
  Plan* plan = plan_for(key, p);
  if (plan == nullptr) {
    if (batch == 1) fail("{}: cuBLASLt has no algorithm for this GEMM on this GPU", describe(p));
    // No strided-batched algorithm (e.g. for a broadcast operand): one GEMM per batch, same stream.
    for (int64_t i = 0; i < batch; ++i) {
      GemmProblem one = p;
      one.batch = 1;
      one.A = static_cast<const char*>(p.A) + static_cast<size_t>(i * p.stride_a) * elem;
      one.B = static_cast<const char*>(p.B) + static_cast<size_t>(i * p.stride_b) * elem;
      one.C = static_cast<char*>(p.C) + static_cast<size_t>(i * p.stride_c) * c_elem;
      one.stride_a = one.stride_b = one.stride_c = 0;
      enqueue(one, ws, ws_bytes, stream);
    }
    return;
  }
  if (p.bias != nullptr) {
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias,
                                                sizeof(p.bias)));
  }
  // cuBLAS computes the column-major C^T = op(B)^T op(A)^T: its A is our B and its B is our A.
  CUBLAS_CHECK(cublasLtMatmul(handle_, plan->desc, &p.alpha, p.B, plan->layout_a, p.A, plan->layout_b,
                              &p.beta, p.C, plan->layout_c, p.C, plan->layout_c, &plan->algo, ws, ws_bytes,
                              stream));
}

GemmRunner::Plan* GemmRunner::plan_for(const Key& key, const GemmProblem& p) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second->has_algo ? it->second.get() : nullptr;

  auto plan = std::make_unique<Plan>();
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  // Row-major through column-major (gemm.cuh): cuBLAS's op on its A (our B) is trans_b, on its B (our A)
  // trans_a.
  const cublasOperation_t op_a = key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  if (key.bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bias_type = cuda_type(key.c_type);
    const int64_t bias_stride = 0;  // the same bias for every batch
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                sizeof(epilogue)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                sizeof(bias_type)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                                                &bias_stride, sizeof(bias_stride)));
    // The heuristic reads the pointer's value for its alignment.
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias,
                                                sizeof(p.bias)));
  }
  // Stored (pre-op) column-major shapes: our row-major B (K, N) is the column-major (N, K), or (K, N) when
  // trans_b; our A (M, K) is (K, M), or (M, K) when trans_a; our C (M, N) is (N, M).
  const cudaDataType_t ab = cuda_type(key.ab_type), c = cuda_type(key.c_type);
  const uint64_t a_rows = key.trans_b ? key.K : key.N, a_cols = key.trans_b ? key.N : key.K;
  const uint64_t b_rows = key.trans_a ? key.M : key.K, b_cols = key.trans_a ? key.K : key.M;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->layout_a, ab, a_rows, a_cols, key.ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->layout_b, ab, b_rows, b_cols, key.lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->layout_c, c, static_cast<uint64_t>(key.N),
                                          static_cast<uint64_t>(key.M), key.ldc));
  set_layout_batch(plan->layout_a, key.batch, key.stride_b);
  set_layout_batch(plan->layout_b, key.batch, key.stride_a);
  set_layout_batch(plan->layout_c, key.batch, key.stride_c);

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { cublasLtMatmulPreferenceDestroy(p); }
  } guard{pref};
  const uint64_t max_ws = key.workspace;
  // Split-K partial sums only in the compute type (fp32), never in a bf16 output.
  const uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws,
                                                    sizeof(max_ws)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                    &reductions, sizeof(reductions)));
  // cuBLAS's A is our B and its B our A.
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                    &key.align_b, sizeof(key.align_b)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                    &key.align_a, sizeof(key.align_a)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                    &key.align_c, sizeof(key.align_c)));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                    &key.align_c, sizeof(key.align_c)));

  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->layout_a, plan->layout_b, plan->layout_c,
                                     plan->layout_c, pref, 1, &result, &found);
  if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED)
    CUBLAS_CHECK(st);  // throws with the status's name
  plan->has_algo = st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS;
  if (plan->has_algo) plan->algo = result.algo;
  Plan* out = plan->has_algo ? plan.get() : nullptr;
  plans_.emplace(key, std::move(plan));
  return out;
}

template <typename TAB, typename TC>
void gemm(GemmRunner& runner, cudaStream_t stream, bool trans_a, bool trans_b, int64_t M, int64_t N,
          int64_t K, float alpha, const TAB* A, int64_t lda, const TAB* B, int64_t ldb, float beta, TC* C,
          int64_t ldc, const TC* bias, int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  GemmDesc d;
  d.trans_a = trans_a;
  d.trans_b = trans_b;
  d.M = M;
  d.N = N;
  d.K = K;
  d.lda = lda;
  d.ldb = ldb;
  d.ldc = ldc;
  d.alpha = alpha;
  d.beta = beta;
  d.batch = batch;
  d.stride_a = stride_a;
  d.stride_b = stride_b;
  d.stride_c = stride_c;
  d.ab_type = gemm_type<TAB>();
  d.c_type = gemm_type<TC>();
  d.bias = bias;
  d.bias_type = gemm_type<TC>();
  runner.run(stream, d, A, B, C);
}

#define ENGINE_GEMM_INSTANTIATE(TAB, TC)                                                                \
  template void gemm<TAB, TC>(GemmRunner&, cudaStream_t, bool, bool, int64_t, int64_t, int64_t, float,  \
                              const TAB*, int64_t, const TAB*, int64_t, float, TC*, int64_t, const TC*, \
                              int64_t, int64_t, int64_t, int64_t);
ENGINE_GEMM_INSTANTIATE(float, float)
ENGINE_GEMM_INSTANTIATE(__nv_bfloat16, __nv_bfloat16)
ENGINE_GEMM_INSTANTIATE(__nv_bfloat16, float)
#undef ENGINE_GEMM_INSTANTIATE

}  // namespace engine::cuda
