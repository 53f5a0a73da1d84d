// Embedding: forward gather, deterministic backward, id check. The GPU twin of kernels/cpu/embedding.cpp.
//
//   forward:   out[n, :] = table[ids[n], :]
//   backward:  grad_table[v, :] = sum_{n : ids[n] == v} grad_out[n, :]   (in increasing n)
//
// Layout: table / grad_table (V, C), ids (N) int32, out / grad_out (N, C), row-major, contiguous.
//
// Forward: one block per token row (grid-stride over tokens), threads copy the row in the widest word (16, 8,
// 4, 2 or 1 bytes) that divides the row and both base pointers' alignment: a pure memcpy of N rows, any T.
//
// Backward without float atomics (atomics would add rows in a different order each run):
//   1. keys[n] = ids[n] (V for an invalid id, so it sorts last and is skipped), vals[n] = n;
//   2. cub::DeviceRadixSort::SortPairs on bits [0, 31) — stable, so tokens of one id stay in token order;
//   3. grad_table = 0 (cudaMemsetAsync: ids that do not occur get zero rows);
//   4. a 2-D grid: x walks sorted positions, y column tiles of 256. A position that starts a run of equal
//      keys sums that run's rows in order (fp32 accumulator, one rounding to T) and writes the id's row.
//      Every element of grad_table is written by one thread, in token order: bitwise repeatable, and for
//      float the same additions in the same order as the CPU reference.
// Cost: the sort is O(N) (4 passes of 8 bits); the sum reads each grad_out row once. A single id repeated by
// most tokens makes one run long: its sum is then serial in rows (parallel over C / 256 column tiles only).
//
// Id check: cudaMemsetAsync of a sentinel, atomicMin on an unsigned 64-bit integer (integer min: order-free,
// hence deterministic), and one thread turning the sentinel into -1. No host synchronisation.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/launch.cuh"

namespace engine::cuda {

namespace {

constexpr int kCopyThreads = 128;
constexpr int kSumThreads = 256;
constexpr int kSortEndBit = 31;  // keys are in [0, V] with V < 2^31
constexpr size_t kAlign = 256;

size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

template <typename W>
__global__ void gather_rows_kernel(const W* __restrict__ table, const int32_t* __restrict__ ids, int64_t N,
                                   int64_t V, int64_t words, W* __restrict__ out) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const int64_t id = ids[n];
    W* dst = out + n * words;
    if (id >= 0 && id < V) {
      const W* src = table + id * words;
      for (int64_t w = threadIdx.x; w < words; w += blockDim.x) dst[w] = src[w];
    } else {
      for (int64_t w = threadIdx.x; w < words; w += blockDim.x) dst[w] = W{};
    }
  }
}

template <typename W>
void gather_rows(cudaStream_t stream, const void* table, const int32_t* ids, int64_t N, int64_t V,
                 int64_t row_bytes, void* out) {
  const int64_t words = row_bytes / static_cast<int64_t>(sizeof(W));
  const unsigned blocks = static_cast<unsigned>(N < (int64_t{1} << 20) ? N : (int64_t{1} << 20));
  gather_rows_kernel<W><<<blocks, kCopyThreads, 0, stream>>>(static_cast<const W*>(table), ids, N, V, words,
                                                             static_cast<W*>(out));
  CUDA_CHECK_LAUNCH();
}

__global__ void make_sort_pairs_kernel(const int32_t* __restrict__ ids, int64_t N, int64_t V,
                                       uint32_t* __restrict__ keys, int32_t* __restrict__ vals) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; n < N; n += stride) {
    const int32_t id = ids[n];
    keys[n] = (id >= 0 && id < V) ? static_cast<uint32_t>(id) : static_cast<uint32_t>(V);
    vals[n] = static_cast<int32_t>(n);
  }
}

template <typename T>
__global__ void sum_sorted_runs_kernel(const T* __restrict__ grad_out, const uint32_t* __restrict__ keys,
                                       const int32_t* __restrict__ tokens, int64_t N, int64_t V, int64_t C,
                                       T* __restrict__ grad_table) {
  const int64_t col = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  for (int64_t k = blockIdx.x; k < N; k += gridDim.x) {
    const uint32_t key = keys[k];
    if (key >= V || (k > 0 && keys[k - 1] == key)) continue;  // not the start of a valid run
    if (col >= C) continue;
    float acc = 0.0f;
    for (int64_t m = k; m < N && keys[m] == key; ++m)
      acc += detail::to_f32(grad_out[static_cast<int64_t>(tokens[m]) * C + col]);
    grad_table[static_cast<int64_t>(key) * C + col] = detail::from_f32<T>(acc);
  }
}

__global__ void check_ids_kernel(const int32_t* __restrict__ ids, int64_t n, int64_t vocab,
                                 unsigned long long* first_bad) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab) atomicMin(first_bad, static_cast<unsigned long long>(i));
  }
}

constexpr unsigned long long kNoBadId = 0x7f7f7f7f7f7f7f7fULL;  // memset byte 0x7f; above any index

__global__ void finish_check_ids_kernel(int64_t* first_bad) {
  if (static_cast<unsigned long long>(*first_bad) == kNoBadId) *first_bad = -1;
}

}  // namespace

template <typename T>
void embedding_forward(cudaStream_t stream, const T* table, const int32_t* ids, int64_t N, int64_t V,
                       int64_t C, T* out) {
  ENGINE_CUDA_REQUIRE(N >= 0 && V >= 0 && C >= 0, "embedding_forward: negative extent");
  if (N == 0 || C == 0) return;
  const int64_t row_bytes = C * static_cast<int64_t>(sizeof(T));
  const uintptr_t align = reinterpret_cast<uintptr_t>(table) | reinterpret_cast<uintptr_t>(out) |
                          static_cast<uintptr_t>(row_bytes);
  if (align % 16 == 0)
    gather_rows<uint4>(stream, table, ids, N, V, row_bytes, out);
  else if (align % 8 == 0)
    gather_rows<uint2>(stream, table, ids, N, V, row_bytes, out);
  else if (align % 4 == 0)
    gather_rows<uint32_t>(stream, table, ids, N, V, row_bytes, out);
  else if (align % 2 == 0)
    gather_rows<uint16_t>(stream, table, ids, N, V, row_bytes, out);
  else
    gather_rows<uint8_t>(stream, table, ids, N, V, row_bytes, out);
}

size_t embedding_backward_workspace_bytes(int64_t N) {
  ENGINE_CUDA_REQUIRE(N >= 0 && N < (int64_t{1} << 31),
                      "embedding_backward_workspace_bytes: N must be < 2^31");
  size_t sort_bytes = 0;
  CUDA_CHECK(
      cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<const uint32_t*>(nullptr),
                                      static_cast<uint32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                      static_cast<int32_t*>(nullptr), static_cast<int>(N), 0, kSortEndBit));
  const size_t pair_array = align_up(static_cast<size_t>(N) * 4);
  return 4 * pair_array + align_up(sort_bytes);
}

template <typename T>
void embedding_backward(cudaStream_t stream, const T* grad_out, const int32_t* ids, int64_t N, int64_t V,
                        int64_t C, T* grad_table, void* workspace, size_t workspace_bytes) {
  ENGINE_CUDA_REQUIRE(N >= 0 && V >= 0 && C >= 0, "embedding_backward: negative extent");
  ENGINE_CUDA_REQUIRE(N < (int64_t{1} << 31) && V < (int64_t{1} << 31),
                      "embedding_backward: N and V must be < 2^31");
  ENGINE_CUDA_REQUIRE((C + kSumThreads - 1) / kSumThreads <= 65535,
                      "embedding_backward: C above 16.7M columns");
  if (V == 0 || C == 0) return;
  CUDA_CHECK(
      cudaMemsetAsync(grad_table, 0, static_cast<size_t>(V) * static_cast<size_t>(C) * sizeof(T), stream));
  if (N == 0) return;
  const size_t needed = embedding_backward_workspace_bytes(N);
  ENGINE_CUDA_REQUIRE(workspace != nullptr && workspace_bytes >= needed,
                      "embedding_backward: workspace smaller than embedding_backward_workspace_bytes(N)");

  const size_t pair_array = align_up(static_cast<size_t>(N) * 4);
  auto* base = static_cast<unsigned char*>(workspace);
  auto* keys_in = reinterpret_cast<uint32_t*>(base);
  auto* keys_out = reinterpret_cast<uint32_t*>(base + pair_array);
  auto* vals_in = reinterpret_cast<int32_t*>(base + 2 * pair_array);
  auto* vals_out = reinterpret_cast<int32_t*>(base + 3 * pair_array);
  void* sort_temp = base + 4 * pair_array;
  size_t sort_bytes = needed - 4 * pair_array;

  make_sort_pairs_kernel<<<detail::grid_blocks(N, 256), 256, 0, stream>>>(ids, N, V, keys_in, vals_in);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_temp, sort_bytes, keys_in, keys_out, vals_in, vals_out,
                                             static_cast<int>(N), 0, kSortEndBit, stream));
  const dim3 grid(static_cast<unsigned>(N < (int64_t{1} << 20) ? N : (int64_t{1} << 20)),
                  static_cast<unsigned>((C + kSumThreads - 1) / kSumThreads));
  sum_sorted_runs_kernel<T>
      <<<grid, kSumThreads, 0, stream>>>(grad_out, keys_out, vals_out, N, V, C, grad_table);
  CUDA_CHECK_LAUNCH();
}

void embedding_check_ids(cudaStream_t stream, const int32_t* ids, int64_t n, int64_t vocab,
                         int64_t* first_bad) {
  ENGINE_CUDA_REQUIRE(n >= 0, "embedding_check_ids: negative element count");
  CUDA_CHECK(cudaMemsetAsync(first_bad, 0x7f, sizeof(int64_t), stream));
  if (n > 0) {
    check_ids_kernel<<<detail::grid_blocks(n, 256), 256, 0, stream>>>(
        ids, n, vocab, reinterpret_cast<unsigned long long*>(first_bad));
    CUDA_CHECK_LAUNCH();
  }
  finish_check_ids_kernel<<<1, 1, 0, stream>>>(first_bad);
  CUDA_CHECK_LAUNCH();
}

template void embedding_forward<float>(cudaStream_t, const float*, const int32_t*, int64_t, int64_t, int64_t,
                                       float*);
template void embedding_forward<double>(cudaStream_t, const double*, const int32_t*, int64_t, int64_t,
                                        int64_t, double*);
template void embedding_forward<__nv_bfloat16>(cudaStream_t, const __nv_bfloat16*, const int32_t*, int64_t,
                                               int64_t, int64_t, __nv_bfloat16*);
template void embedding_forward<__half>(cudaStream_t, const __half*, const int32_t*, int64_t, int64_t,
                                        int64_t, __half*);
template void embedding_backward<float>(cudaStream_t, const float*, const int32_t*, int64_t, int64_t, int64_t,
                                        float*, void*, size_t);
template void embedding_backward<__nv_bfloat16>(cudaStream_t, const __nv_bfloat16*, const int32_t*, int64_t,
                                                int64_t, int64_t, __nv_bfloat16*, void*, size_t);

}  // namespace engine::cuda
