// The fast bf16 attention path: cuDNN's fused SDPA (flash attention) through the cuDNN frontend, behind an
// interface with no cuDNN types, so that only kernels/cuda/attention_cudnn.cpp includes the frontend (one
// translation unit that takes ~2 minutes to compile). Same semantics and layouts as attention.cuh; bf16 I/O,
// fp32 compute and fp32 lse (cuDNN's softmax "Stats", the natural-log log-sum-exp, so either backward can use
// either forward's lse).
//
// Causal masks: q_offset == 0 with Tq == Tk is cuDNN's top-left causal mask, q_offset == Tk - Tq (the KV
// cache in generation) its bottom-right one; any other q_offset is refused. Packed rows (segments) use
// cuDNN's ragged layout: every contiguous run of one segment id in a row is its own sequence, described by
// per-sequence lengths and ragged offsets into q, k, v, out, lse and the gradients, which a small kernel
// (attention_segment_offsets) computes on the device from the segment ids, so nothing is copied and the host
// never waits. The number of sequences is part of cuDNN's graph, so the caller passes an upper bound
// (max_sequences; the packer knows how many samples a batch holds; 0 means B * T, always enough, but it makes
// cuDNN launch work for B * T sequences); runs past the bound would be dropped. The backward of packed rows
// is refused for now (backward_unsupported says why: cuDNN 9.19's ragged backward gave wrong gradients on an
// H200 while the ragged forward was right), so callers run the own backward on cuDNN's forward out and lse.
// cuDNN also refuses the backward of Tq == Tk == 1 ("s_q = s_kv = 1 is not supported"), and segments with
// T == 1 are refused in both directions (its ragged forward gave a wrong lse there).
// Without the frontend headers at build time (scripts/setup.sh fetches them) this compiles to a version that
// reports itself unavailable, and callers use the own kernels.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/cuda/attention.cuh"

namespace engine::cuda {

// True when this build has the cuDNN frontend, the loaded cuDNN is 9.x or newer and the current GPU is sm_80
// or newer; otherwise false with the reason in *why.
bool attention_cudnn_available(std::string* why = nullptr);

struct CudnnAttentionProblem {
  AttentionDims dims;
  float scale = 1.0f;
  bool segments = false;      // segments (B, T) are given (packed rows)
  int64_t max_sequences = 0;  // with segments: an upper bound on the segment runs of the batch (0: B * Tq)
  bool with_lse = true;       // the forward writes lse (training); false in generation
  bool deterministic = true;  // backward: cuDNN's deterministic algorithm (false: atomics, O(T) workspace)
};

// One per device (it owns a cuDNN handle made on the device current at construction, and the graphs built
// for each problem shape). Not thread-safe.
class CudnnAttention {
 public:
  CudnnAttention();
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // Empty when cuDNN takes the problem (the graph is built and cached on the first query); otherwise why
  // not, for the caller's message and its fallback to the own kernels.
  std::string forward_unsupported(const CudnnAttentionProblem& pb);
  std::string backward_unsupported(const CudnnAttentionProblem& pb);

  // Device workspace bytes a call needs (cuDNN's own plus the ragged offsets); the caller allocates them.
  size_t forward_workspace_bytes(const CudnnAttentionProblem& pb);
  size_t backward_workspace_bytes(const CudnnAttentionProblem& pb);

  // Pointers 16-byte aligned, D a multiple of 8. segments (B, T) when pb.segments, else null; lse may be null
  // only when !pb.with_lse. Throw engine::Error when the problem is unsupported (ask first) or cuDNN fails.
  void forward(const CudnnAttentionProblem& pb, const __nv_bfloat16* q, const __nv_bfloat16* k,
               const __nv_bfloat16* v, const int32_t* segments, __nv_bfloat16* out, float* lse,
               void* workspace, size_t workspace_bytes, cudaStream_t stream);
  // cuDNN's deterministic algorithm (bitwise repeatable) unless pb.deterministic is false. grad_k, grad_v dense
  // (B, Tk, Hkv, D).
  void backward(const CudnnAttentionProblem& pb, const __nv_bfloat16* q, const __nv_bfloat16* k,
                const __nv_bfloat16* v, const int32_t* segments, const __nv_bfloat16* out, const float* lse,
                const __nv_bfloat16* grad_out, __nv_bfloat16* grad_q, __nv_bfloat16* grad_k,
                __nv_bfloat16* grad_v, void* workspace, size_t workspace_bytes, cudaStream_t stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace engine::cuda
