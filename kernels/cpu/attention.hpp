// Causal grouped-query attention with a packed-sequence (segment) mask.
//
//   out[b, i, h] = sum_j P[i, j] v[b, j, h / G],  P[i, :] = softmax_j(scale * q[b, i, h] . k[b, j, h / G])
// over keys j <= q_offset + i (causal) with segment[b, j] == segment[b, i] when segments are given;
// G = Hq / Hkv query heads share one key/value head.
//
// Layout: q, out (B, Tq, Hq, D); k, v (B, Tk, Hkv, D) with kv_batch_stride elements between batches (the KV
// cache holds max_len rows per batch); lse (B, Hq, Tq) saved for backward; segments (B, T) int32 or null. The
// (B, T, H, D) layout is the one the projections produce, so no transposes are needed: rows of one head are
// D-contiguous and Hq * D apart.
//
// Chosen implementation (memory-lean, no (B, H, T, T) tensor): one query row at a time against all its
// visible keys, with an exact two-pass softmax over the row (max, then exp and sum) and the weighted sum of
// v; only the log-sum-exp of each row is saved. Per thread: the keys of the current (b, kv head) transposed
// to (D, Tk) and a (Tk) score buffer. The transposition turns the scores q . k_j into D contiguous axpys over
// j (vectorised across keys, no horizontal sums), and p @ V into axpys over D; both loops are compiled for
// AVX-512 / AVX2 / baseline (ENGINE_SIMD_CLONES) and chosen at load time. Backward recomputes P[i, j] =
// exp(s_ij - lse_i) and uses
//   dP_ij = dO_i . v_j,  Dl_i = dO_i . O_i,  dS_ij = P_ij (dP_ij - Dl_i)
//   dq_i = scale sum_j dS_ij k_j,  dk_j += scale dS_ij q_i,  dv_j += P_ij dO_i
// with dk and dv accumulated transposed (D, Tk) as rank-1 updates (again contiguous over j).
// Forward splits over (b, h, query rows). Backward, when B * Hkv >= 8, splits over (b, kv head): a task owns dk
// and dv of its kv head and walks its G query heads and rows in order. With fewer (b, kv head) pairs (e.g.
// batch 1 of a model with 2 kv heads) that would leave threads idle, so the backward then runs in two passes:
// dq split over query rows, then dk / dv split over (b, kv head, block of 32 keys), recomputing P and dP in
// each (14 D instead of 10 D FLOPs per pair). The form depends on the shape only; every sum happens in a fixed
// order (deterministic, no atomics, independent of the thread count).
// Measured (bench_train_step_cpu, T = 256, D = 64, 8 heads, 8 layers, 2 threads): the first version (a dot
// product per (i, j) pair, baseline SSE2) took 400 ms per step for 1.6 GFLOP; this layout ~116-210 ms
// depending on machine load (bench/RESULTS.md).
#pragma once

#include <cstdint>

namespace engine::cpu {

class ThreadPool;

struct AttentionDims {
  int64_t B = 0, Tq = 0, Tk = 0, Hq = 0, Hkv = 0, D = 0;
  int64_t q_offset = 0;         // key position of query row 0 (0 in training; the cache length in generation)
  int64_t kv_batch_stride = 0;  // elements between batches of k and v (Tk * Hkv * D when dense)
};

// lse may be null (generation). segments only when Tq == Tk and q_offset == 0.
template <typename T>
void attention_forward(ThreadPool& pool, const AttentionDims& d, const T* q, const T* k, const T* v,
                       const int32_t* segments, T scale, T* out, T* lse);

// grad_q (B, Tq, Hq, D), grad_k and grad_v (B, Tk, Hkv, D) dense, overwritten.
template <typename T>
void attention_backward(ThreadPool& pool, const AttentionDims& d, const T* q, const T* k, const T* v,
                        const int32_t* segments, T scale, const T* out, const T* lse, const T* grad_out,
                        T* grad_q, T* grad_k, T* grad_v);

}  // namespace engine::cpu
