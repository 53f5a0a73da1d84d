// Embedding: out[n, :] = table[ids[n], :]; backward scatter-adds grad rows into the table gradient.
//
// table: (V, C), ids: (N) int32, out / grad_out: (N, C). Forward splits over tokens. Backward must add the
// rows of tokens that share an id; to stay deterministic without atomics it splits over columns of C instead:
// each chunk owns a column range of the whole (V, C) gradient and walks the tokens in order, so every element
// is summed in token order whatever the thread count.
#pragma once

#include <cstdint>

namespace engine::cpu {

class ThreadPool;

// Returns the index n of the first id outside [0, V), or -1 when all are valid (nothing is written then).
int64_t check_ids(const int32_t* ids, int64_t n, int64_t vocab);

// T: float, double, or the 16-bit storage types Bf16 / F16 (kernels/cpu/cast.hpp), copied as stored.
template <typename T>
void embedding_forward(ThreadPool& pool, const T* table, const int32_t* ids, int64_t N, int64_t C, T* out);
// grad_table (V, C) is overwritten: zeroed, then the rows of grad_out added at their ids.
template <typename T>
void embedding_backward(ThreadPool& pool, const T* grad_out, const int32_t* ids, int64_t N, int64_t V,
                        int64_t C, T* grad_table);

}  // namespace engine::cpu
