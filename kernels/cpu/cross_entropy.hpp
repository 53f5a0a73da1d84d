// Cross-entropy over a vocabulary, and the fused linear + cross-entropy that never holds (N, V) logits.
//
// For a row with logits z (V) and label y != ignore_index:
//   lse = m + log sum_v exp(z_v - m),  m = max_v z_v        (stable log-sum-exp)
//   loss_row = lse - z_y,               dloss/dz_v = softmax(z)_v - [v == y]
// loss = scale * sum over non-ignored rows; ignored rows contribute 0 to the loss and their gradient is 0.
// Row losses are computed in parallel, stored per row, and summed in row order in double (deterministic).
//
// Fused linear + CE (hidden (N, C), weight (V, C)): rows are processed in chunks of R rows (R chosen so that
// an (R, V) logit block fits kLogitBudgetBytes); each chunk's logits = h W^T come from one GEMM on the
// calling thread, then the row statistics run on the pool. Only lse (N) is saved. Backward recomputes each
// chunk's logits, turns them into dlogits in place, and accumulates grad_hidden[chunk] = dlogits W and
// grad_weight += dlogits^T h[chunk] (GEMMs, chunks in order -> deterministic). Chunks whose labels are all
// ignored are skipped in both directions. Cost: the chunk logits are formed twice (forward and backward),
// i.e. 8 N V C FLOPs instead of 6 N V C, the price of O(R V) instead of O(N V) memory.
#pragma once

#include <cstdint>

namespace engine::cpu {

class ThreadPool;

// Bytes allowed for one chunk of logits in the fused loss.
constexpr int64_t kLogitBudgetBytes = int64_t{32} << 20;
// Rows per chunk for vocabulary size V and element size elem_bytes (at least 1).
int64_t linear_ce_chunk_rows(int64_t V, int64_t elem_bytes);

// logits (N, V), labels (N); lse (N) written (0 for ignored rows). Returns scale * sum of row losses.
template <typename T>
double cross_entropy_forward(ThreadPool& pool, const T* logits, const int32_t* labels, int64_t N, int64_t V,
                             int64_t ignore_index, double scale, T* lse);
// dlogits (N, V) = coef * (softmax - onehot) on non-ignored rows, 0 elsewhere; coef = scale * dloss.
template <typename T>
void cross_entropy_backward(ThreadPool& pool, const T* logits, const int32_t* labels, const T* lse, int64_t N,
                            int64_t V, int64_t ignore_index, T coef, T* dlogits);

// hidden (N, C), weight (V, C), labels (N); lse (N) written. Returns scale * sum of row losses.
template <typename T>
double linear_cross_entropy_forward(ThreadPool& pool, const T* hidden, const T* weight, const int32_t* labels,
                                    int64_t N, int64_t C, int64_t V, int64_t ignore_index, double scale,
                                    int64_t chunk_rows, T* lse);
// grad_hidden (N, C) and grad_weight (V, C) overwritten (either may be null).
template <typename T>
void linear_cross_entropy_backward(ThreadPool& pool, const T* hidden, const T* weight, const int32_t* labels,
                                   const T* lse, int64_t N, int64_t C, int64_t V, int64_t ignore_index,
                                   T coef, int64_t chunk_rows, T* grad_hidden, T* grad_weight);

}  // namespace engine::cpu
