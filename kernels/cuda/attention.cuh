// Causal grouped-query attention with packed-sequence segments on the GPU: the engine's own tiled
// FlashAttention-2-style kernels (forward with the row log-sum-exp, deterministic backward). The CPU
// reference is kernels/cpu/attention.hpp; the fast bf16 path through cuDNN is
// kernels/cuda/attention_cudnn.hpp.
//
// Layout (as the CPU reference): q, out, grad_q (B, Tq, Hq, D); k, v (B, Tk, Hkv, D) with kv_batch_stride
// elements between batches; grad_k, grad_v dense (B, Tk, Hkv, D); lse (B, Hq, Tq) fp32 whatever T is;
// segments (B, T) int32 or null (only with Tq == Tk and q_offset == 0). Query row i of a batch sees key j iff
// j <= q_offset + i, j < Tk and, with segments, segments[b, j] == segments[b, i].
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace engine::cuda {

struct AttentionDims {
  int64_t B = 0, Tq = 0, Tk = 0, Hq = 0, Hkv = 0, D = 0;
  int64_t q_offset = 0;         // key position of query row 0 (0 in training; the cache length in generation)
  int64_t kv_batch_stride = 0;  // elements between batches of k and v (Tk * Hkv * D when dense)
};

// Largest head dimension the own kernels take (any D in [1, 256] is correct; 64 and 128 are the tuned ones).
inline constexpr int64_t kAttentionMaxHeadDim = 256;

// out (B, Tq, Hq, D) and, when lse is not null, lse (B, Hq, Tq) = log sum_j exp(scale q_i . k_j) over the
// visible keys. Throws std::invalid_argument for a shape it cannot take (D > 256, Hq % Hkv != 0, ...).
template <typename T>
void attention_forward(const AttentionDims& d, const T* q, const T* k, const T* v, const int32_t* segments,
                       float scale, T* out, float* lse, cudaStream_t stream);

// grad_q (B, Tq, Hq, D), grad_k and grad_v (B, Tk, Hkv, D) dense, overwritten. lse from attention_forward
// (or cuDNN's forward: the same natural-log statistic). Deterministic: two passes with no atomics, one over
// key blocks (dk, dv of a block of keys from every query row that sees them) and one over query blocks (dq),
// each summing in a fixed order; the result is bitwise repeatable.
template <typename T>
void attention_backward(const AttentionDims& d, const T* q, const T* k, const T* v, const int32_t* segments,
                        float scale, const T* out, const float* lse, const T* grad_out, T* grad_q, T* grad_k,
                        T* grad_v, cudaStream_t stream);

// For cuDNN's ragged layout: from segments (B, T) int32 (each segment id one contiguous run of a row, as the
// packer writes them), sequence s = the s-th run in row-major order. Writes, for s < max_sequences:
//   seq_len[s]               run length (0 for s >= the number of runs)
//   q_offset_elems[s]        (b * T + t0) * q_token_elems      (start of run s in q / out / grad_q)
//   kv_offset_elems[s]       b * kv_batch_elems + t0 * kv_token_elems
//   stats_offset_elems[s]    b * Hq * T + t0                   (start of run s in lse (B, Hq, T))
// and entry max_sequences of the three offset arrays (the end). Runs past max_sequences are dropped (the
// caller's bound must hold); *run_count (int32, may be null) receives the number of runs. One block; no host
// synchronisation.
void attention_segment_offsets(const int32_t* segments, int64_t B, int64_t T, int64_t Hq,
                               int64_t q_token_elems, int64_t kv_token_elems, int64_t kv_batch_elems,
                               int64_t max_sequences, int32_t* seq_len, int32_t* q_offset_elems,
                               int32_t* kv_offset_elems, int32_t* stats_offset_elems, int32_t* run_count,
                               cudaStream_t stream);

}  // namespace engine::cuda
