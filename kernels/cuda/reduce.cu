// Reductions: sum_all, sum_squares, count_nonfinite, sum_rows, sum_rows_product. The GPU twin of
// kernels/cpu/reduce.cpp.
//
//   sum_all = sum_i x_i,   sum_squares = sum_i x_i^2,   count_nonfinite = #{i : !isfinite(x_i)}
//   sum_rows[j] = sum_i x[i, j],   sum_rows_product[j] = sum_i x[i, j] * y[i, j]
//
// Determinism is the design constraint: nothing here uses a float atomic, and how the work is split depends
// only on the sizes (never on the GPU, the clock or the scheduling), so the same inputs give the same bits.
//
// Scalar reductions (sum_all, sum_squares): a fixed number of blocks B(n) = clamp(n / 4096, 1, 1024) of 256
// threads. Thread t of block b adds elements b*256 + t + k * B*256 in increasing k, in f64 (four loads in
// flight per iteration, added in order); the block combines its 256 values with a fixed shuffle tree and
// writes one f64 partial; a second one-block kernel combines the B partials with the same tree and writes
// the f32 result (adding to it with `accumulate`). With B == 1 the first kernel writes the result itself.
// f64 keeps the sum of a 7B-element gradient exact to f32 precision; on an H200 f64 adds cost nothing here
// (memory bound by far).
//
// Column sums (sum_rows, sum_rows_product): x (rows, cols) row-major. Blocks of 256 threads own 256
// consecutive columns (coalesced loads along a row) and a chunk of 512 rows; each thread adds its column over
// the chunk in row order (f64). One chunk: the result is written directly. More: each chunk writes an f64
// partial row into the workspace and a second kernel adds the chunks in chunk order. That spreads a
// (16k, 152k) matrix over 600 x 32 blocks and still handles (2, 1).
//
// count_nonfinite: per-block integer counts added with one integer atomicAdd per block; integer addition is
// exact and commutative, so the count is deterministic.
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"

namespace engine::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMinPerBlock = 4096;
constexpr int64_t kMaxBlocks = 1024;
constexpr int64_t kRowChunk = 512;

int64_t scalar_blocks(int64_t n) {
  int64_t b = n / kMinPerBlock;
  if (b < 1) b = 1;
  if (b > kMaxBlocks) b = kMaxBlocks;
  return b;
}

// Sum of v over the block's threads in a fixed tree; the result is valid in thread 0. blockDim.x == kThreads.
template <typename A>
__device__ A block_sum(A v) {
  __shared__ A warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  A total = 0;
  if (warp == 0) {
    total = lane < kThreads / 32 ? warp_sums[lane] : A(0);
    for (int offset = 16; offset > 0; offset /= 2) total += __shfl_down_sync(0xffffffffu, total, offset);
  }
  return total;
}

struct Identity {
  __device__ double operator()(float v) const { return static_cast<double>(v); }
};
struct Square {
  __device__ double operator()(float v) const {
    const double d = v;
    return d * d;
  }
};

__device__ __forceinline__ void store_result(float* out, double total, bool accumulate) {
  *out = static_cast<float>(accumulate ? static_cast<double>(*out) + total : total);
}

// Pass 1: block partials (or the result, with one block).
template <typename T, typename Op>
__global__ void scalar_reduce_kernel(const T* __restrict__ x, int64_t n, double* __restrict__ partials,
                                     float* out, bool accumulate) {
  Op op;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  double acc = 0.0;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const float v0 = detail::to_f32(x[i]), v1 = detail::to_f32(x[i + stride]);
    const float v2 = detail::to_f32(x[i + 2 * stride]), v3 = detail::to_f32(x[i + 3 * stride]);
    acc += op(v0);
    acc += op(v1);
    acc += op(v2);
    acc += op(v3);
  }
  for (; i < n; i += stride) acc += op(detail::to_f32(x[i]));
  const double total = block_sum(acc);
  if (threadIdx.x == 0) {
    if (gridDim.x == 1)
      store_result(out, total, accumulate);
    else
      partials[blockIdx.x] = total;
  }
}

// Pass 2: one block adds the partials.
__global__ void combine_partials_kernel(const double* __restrict__ partials, int blocks, float* out,
                                        bool accumulate) {
  double acc = 0.0;
  for (int b = threadIdx.x; b < blocks; b += kThreads) acc += partials[b];
  const double total = block_sum(acc);
  if (threadIdx.x == 0) store_result(out, total, accumulate);
}

template <typename T, typename Op>
void scalar_reduce(cudaStream_t stream, const T* x, int64_t n, float* out, bool accumulate, void* workspace,
                   const char* what) {
  ENGINE_CUDA_REQUIRE(n >= 0, what);
  const int64_t blocks = scalar_blocks(n);
  ENGINE_CUDA_REQUIRE(blocks == 1 || workspace != nullptr, what);
  auto* partials = static_cast<double*>(workspace);
  scalar_reduce_kernel<T, Op>
      <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(x, n, partials, out, accumulate);
  CUDA_CHECK_LAUNCH();
  if (blocks > 1) {
    combine_partials_kernel<<<1, kThreads, 0, stream>>>(partials, static_cast<int>(blocks), out, accumulate);
    CUDA_CHECK_LAUNCH();
  }
}

template <typename T>
__global__ void count_nonfinite_kernel(const T* __restrict__ x, int64_t n, int* out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  int count = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride)
    count += isfinite(detail::to_f32(x[i])) ? 0 : 1;
  const int total = block_sum(count);
  if (threadIdx.x == 0 && total != 0) atomicAdd(out, total);
}

// Column sums over one chunk of rows. Flattened block id = chunk * tiles + tile.
template <typename T, bool Product>
__global__ void column_sums_kernel(const T* __restrict__ x, const T* __restrict__ y, int64_t rows,
                                   int64_t cols, int64_t tiles, int64_t chunks, double* __restrict__ partials,
                                   T* __restrict__ out) {
  for (int64_t bid = blockIdx.x; bid < tiles * chunks; bid += gridDim.x) {
    const int64_t chunk = bid / tiles, tile = bid % tiles;
    const int64_t col = tile * kThreads + threadIdx.x;
    if (col >= cols) continue;
    const int64_t r0 = chunk * kRowChunk;
    const int64_t r1 = r0 + kRowChunk < rows ? r0 + kRowChunk : rows;
    double acc = 0.0;
#pragma unroll 8
    for (int64_t r = r0; r < r1; ++r) {
      const float v = detail::to_f32(x[r * cols + col]);
      if constexpr (Product)
        acc += static_cast<double>(v) * static_cast<double>(detail::to_f32(y[r * cols + col]));
      else
        acc += static_cast<double>(v);
    }
    if (chunks == 1)
      out[col] = detail::from_f32<T>(static_cast<float>(acc));
    else
      partials[chunk * cols + col] = acc;
  }
}

template <typename T>
__global__ void combine_column_partials_kernel(const double* __restrict__ partials, int64_t chunks,
                                               int64_t cols, T* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t col = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; col < cols; col += stride) {
    double acc = 0.0;
    for (int64_t c = 0; c < chunks; ++c) acc += partials[c * cols + col];
    out[col] = detail::from_f32<T>(static_cast<float>(acc));
  }
}

template <typename T, bool Product>
void column_sums(cudaStream_t stream, const T* x, const T* y, int64_t rows, int64_t cols, T* out,
                 void* workspace, const char* what) {
  ENGINE_CUDA_REQUIRE(rows >= 0 && cols >= 0, what);
  if (cols == 0) return;
  if (rows == 0) {
    CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(cols) * sizeof(T), stream));  // 0 bits = +0.0
    return;
  }
  const int64_t tiles = (cols + kThreads - 1) / kThreads;
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  ENGINE_CUDA_REQUIRE(chunks == 1 || workspace != nullptr, what);
  auto* partials = static_cast<double*>(workspace);
  const int64_t total = tiles * chunks;
  const unsigned blocks = static_cast<unsigned>(total < (int64_t{1} << 20) ? total : (int64_t{1} << 20));
  column_sums_kernel<T, Product>
      <<<blocks, kThreads, 0, stream>>>(x, y, rows, cols, tiles, chunks, partials, out);
  CUDA_CHECK_LAUNCH();
  if (chunks > 1) {
    combine_column_partials_kernel<T>
        <<<detail::grid_blocks(cols, kThreads), kThreads, 0, stream>>>(partials, chunks, cols, out);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

size_t scalar_reduce_workspace_bytes(int64_t n) {
  const int64_t blocks = scalar_blocks(n);
  return blocks == 1 ? 0 : static_cast<size_t>(blocks) * sizeof(double);
}

template <typename T>
void sum_all(cudaStream_t stream, const T* x, int64_t n, float* out, bool accumulate, void* workspace) {
  scalar_reduce<T, Identity>(stream, x, n, out, accumulate, workspace,
                             "sum_all: n < 0, or no workspace (scalar_reduce_workspace_bytes) for n > 4096");
}

template <typename T>
void sum_squares(cudaStream_t stream, const T* x, int64_t n, float* out, bool accumulate, void* workspace) {
  scalar_reduce<T, Square>(
      stream, x, n, out, accumulate, workspace,
      "sum_squares: n < 0, or no workspace (scalar_reduce_workspace_bytes) for n > 4096");
}

template <typename T>
void count_nonfinite(cudaStream_t stream, const T* x, int64_t n, int* out, bool accumulate) {
  ENGINE_CUDA_REQUIRE(n >= 0, "count_nonfinite: negative element count");
  if (!accumulate) CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(int), stream));
  if (n == 0) return;
  count_nonfinite_kernel<T><<<static_cast<unsigned>(scalar_blocks(n)), kThreads, 0, stream>>>(x, n, out);
  CUDA_CHECK_LAUNCH();
}

size_t sum_rows_workspace_bytes(int64_t rows, int64_t cols) {
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  return chunks <= 1 ? 0 : static_cast<size_t>(chunks) * static_cast<size_t>(cols) * sizeof(double);
}

template <typename T>
void sum_rows(cudaStream_t stream, const T* x, int64_t rows, int64_t cols, T* out, void* workspace) {
  column_sums<T, false>(
      stream, x, nullptr, rows, cols, out, workspace,
      "sum_rows: negative extent, or no workspace (sum_rows_workspace_bytes) for rows > 512");
}

template <typename T>
void sum_rows_product(cudaStream_t stream, const T* x, const T* y, int64_t rows, int64_t cols, T* out,
                      void* workspace) {
  column_sums<T, true>(
      stream, x, y, rows, cols, out, workspace,
      "sum_rows_product: negative extent, or no workspace (sum_rows_workspace_bytes) for rows > 512");
}

#define ENGINE_INSTANTIATE(T)                                                         \
  template void sum_all<T>(cudaStream_t, const T*, int64_t, float*, bool, void*);     \
  template void sum_squares<T>(cudaStream_t, const T*, int64_t, float*, bool, void*); \
  template void count_nonfinite<T>(cudaStream_t, const T*, int64_t, int*, bool);      \
  template void sum_rows<T>(cudaStream_t, const T*, int64_t, int64_t, T*, void*);     \
  template void sum_rows_product<T>(cudaStream_t, const T*, const T*, int64_t, int64_t, T*, void*);
ENGINE_INSTANTIATE(float)
ENGINE_INSTANTIATE(__nv_bfloat16)
#undef ENGINE_INSTANTIATE

}  // namespace engine::cuda
