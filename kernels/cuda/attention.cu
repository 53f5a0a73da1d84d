// Causal grouped-query attention (packed segments, KV-cache offset) on the GPU: the engine's own tiled
// kernels.
//
// What: out[b, i, h] = sum_j P_ij v[b, j, h / G], P_i = softmax_j(scale q_i . k_j) over the visible keys
// (j <= q_offset + i, j < Tk, same segment), lse_i = log sum_j exp(scale q_i . k_j); and the backward
//   dP_ij = dO_i . v_j,  Dl_i = dO_i . O_i,  dS_ij = P_ij (dP_ij - Dl_i),  P_ij = exp(s_ij - lse_i)
//   dq_i = scale sum_j dS_ij k_j,   dk_j = scale sum_i dS_ij q_i,   dv_j = sum_i P_ij dO_i
// with the sums over i running over the G query heads of a kv head too (GQA).
//
// Layout: q, out (B, Tq, Hq, D); k, v (B, Tk, Hkv, D) with kv_batch_stride between batches; lse (B, Hq, Tq)
// fp32; dk, dv dense. A head's row is D-contiguous, rows Hq * D (or Hkv * D) apart: tiles load row-wise,
// coalesced over d.
//
// Shape (FlashAttention-2, fp32 FMA tiles in shared memory, no tensor cores: this is the reference GPU path
// and the fp32 path; cuDNN's fused SDPA is the fast bf16 path). Blocks of kRows = 32 query rows x kCols = 32
// keys; a thread block has 32 row groups of kC lanes (kC = 4 for D <= 128, 8 above), lane c of row r owning
// the score columns c, c + kC, ... and the output columns d = c, c + kC, ... (strided so that a warp reads
// consecutive shared-memory words). Tiles are fp32 in shared memory with a row pitch of D + 1 floats (odd:
// the 8 rows a warp reads at one d fall in 8 different banks). Forward: one thread block per (query block,
// head, batch) walks the key blocks with the online softmax (running max m, sum l, rescale by exp(m - m')),
// never the (T, T) matrix. Key blocks with no visible pair (beyond the causal edge, or in other segments)
// are skipped with __syncthreads_or: skipping changes no bit of the result (they add exact zeros).
// Backward, deterministic without atomics: pass 1 has one thread block per (key block, kv head, batch)
// that accumulates dk, dv of its 32 keys in registers from every query block (of every query head of the
// group) that sees them; pass 2 one thread block per (query block, head, batch) that accumulates dq over
// the key blocks. Both recompute P (and Dl_i = dO_i . O_i, D FLOPs per row) rather than store anything, so
// the backward needs no workspace. All sums run in a fixed order: bitwise repeatable.
// Shared memory: forward (32 + 64) (D + 1) + 32 * 33 floats (D = 128: 54 KiB), backward pass 1
// 128 (D + 1) + 2 * 32 * 33 + 64 floats (D = 128: 75 KiB; D = 256: 140 KiB), above the 48 KiB default, so
// each launch raises the kernel's dynamic shared-memory limit.
#include <cuda_bf16.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/cuda_check.cuh"

namespace engine::cuda {

namespace {

constexpr int kRows = 32;  // query rows of a block
constexpr int kCols = 32;  // keys of a block

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

struct Params {
  int64_t B, Tq, Tk, Hq, Hkv, D, G, q_offset, kv_batch_stride;
  float scale;
};

// dst (rows, D) with pitch ld = rows row0.. of a head whose row r starts at base + r * row_stride; rows at or
// past `limit` are zero.
template <typename T>
__device__ void load_tile(float* dst, const T* base, int64_t row_stride, int64_t row0, int64_t limit,
                          int rows, int D, int ld) {
  for (int idx = threadIdx.x; idx < rows * D; idx += blockDim.x) {
    const int rr = idx / D, dd = idx - rr * D;
    const int64_t row = row0 + rr;
    dst[rr * ld + dd] = row < limit ? to_float(base[row * row_stride + dd]) : 0.0f;
  }
}

// Reductions over the kC lanes of a row group (consecutive lanes); every lane gets the result.
template <int kC>
__device__ __forceinline__ float group_max(float x) {
#pragma unroll
  for (int off = kC / 2; off > 0; off /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  return x;
}
template <int kC>
__device__ __forceinline__ float group_sum(float x) {
#pragma unroll
  for (int off = kC / 2; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// Dl_i = dO_i . O_i for query row i; 0 when !valid. Every lane of the warp must call it (the shuffles take
// the whole warp); the kC lanes of a row group get the same value.
template <typename T, int kC>
__device__ float row_dot(bool valid, const T* a, const T* b, int D, int c) {
  float s = 0.0f;
  if (valid)
    for (int d = c; d < D; d += kC) s += to_float(a[d]) * to_float(b[d]);
  return group_sum<kC>(s);
}

__device__ __forceinline__ bool visible(const Params& p, const int32_t* seg_b, int64_t i, int32_t seg_i,
                                        int64_t j) {
  return j < p.Tk && j <= p.q_offset + i && (seg_b == nullptr || seg_b[j] == seg_i);
}

template <int kMaxD>
struct Config {
  static constexpr int kC = kMaxD <= 128 ? 4 : 8;  // lanes per row group
  static constexpr int kThreads = kRows * kC;      // 128 or 256
  static constexpr int kPer = kMaxD / kC;          // output columns per lane
  static constexpr int kJ = kCols / kC;            // score columns per lane (8 or 4)
  static constexpr int kI = kRows / kC;            // query columns per lane in the backward key pass
};

// ---- forward: one block per (query block, head, batch) ----
template <typename T, int kMaxD>
__global__ void __launch_bounds__(Config<kMaxD>::kThreads)
    attention_forward_kernel(Params p, const T* __restrict__ q, const T* __restrict__ k,
                             const T* __restrict__ v, const int32_t* __restrict__ segments,
                             T* __restrict__ out, float* __restrict__ lse) {
  using C = Config<kMaxD>;
  extern __shared__ float smem[];
  const int D = static_cast<int>(p.D), ld = D + 1;
  float* qs = smem;             // (kRows, ld)
  float* ks = qs + kRows * ld;  // (kCols, ld)
  float* vs = ks + kCols * ld;  // (kCols, ld)
  float* ps = vs + kCols * ld;  // (kRows, kCols + 1)
  const int64_t b = blockIdx.z, h = blockIdx.y, hk = h / p.G, i0 = int64_t(blockIdx.x) * kRows;
  const int r = threadIdx.x / C::kC, c = threadIdx.x % C::kC;
  const int64_t i = i0 + r;
  const bool row_ok = i < p.Tq;
  const T* qb = q + (b * p.Tq * p.Hq + h) * p.D;  // query row i at qb + i * Hq * D
  const T* kb = k + b * p.kv_batch_stride + hk * p.D;
  const T* vb = v + b * p.kv_batch_stride + hk * p.D;
  const int32_t* seg_b = segments ? segments + b * p.Tk : nullptr;
  const int32_t seg_i = (segments && row_ok) ? segments[b * p.Tq + i] : 0;

  load_tile(qs, qb, p.Hq * p.D, i0, p.Tq, kRows, D, ld);
  float m = -INFINITY, l = 0.0f, o[C::kPer];
#pragma unroll
  for (int e = 0; e < C::kPer; ++e) o[e] = 0.0f;

  const int64_t i_last = (i0 + kRows < p.Tq ? i0 + kRows : p.Tq) - 1;
  const int64_t k_end = p.q_offset + i_last + 1 < p.Tk ? p.q_offset + i_last + 1 : p.Tk;
  for (int64_t j0 = 0; j0 < k_end; j0 += kCols) {
    bool vis[C::kJ];
    bool any = false;
#pragma unroll
    for (int n = 0; n < C::kJ; ++n) {
      vis[n] = row_ok && visible(p, seg_b, i, seg_i, j0 + c + C::kC * n);
      any |= vis[n];
    }
    // Also the barrier that ends the previous block's reads of ks, vs and ps.
    if (!__syncthreads_or(any)) continue;
    load_tile(ks, kb, p.Hkv * p.D, j0, p.Tk, kCols, D, ld);
    load_tile(vs, vb, p.Hkv * p.D, j0, p.Tk, kCols, D, ld);
    __syncthreads();

    float s[C::kJ];
#pragma unroll
    for (int n = 0; n < C::kJ; ++n) s[n] = 0.0f;
    for (int d = 0; d < D; ++d) {
      const float qd = qs[r * ld + d];
#pragma unroll
      for (int n = 0; n < C::kJ; ++n) s[n] += qd * ks[(c + C::kC * n) * ld + d];
    }
    float block_max = -INFINITY;
#pragma unroll
    for (int n = 0; n < C::kJ; ++n) {
      s[n] = vis[n] ? s[n] * p.scale : -INFINITY;
      block_max = fmaxf(block_max, s[n]);
    }
    const float m_new = fmaxf(m, group_max<C::kC>(block_max));
    // m_new == -inf only when no key of the row was visible yet (then o and l are still 0).
    const float alpha = m == -INFINITY ? 0.0f : expf(m - m_new);
    float psum = 0.0f;
#pragma unroll
    for (int n = 0; n < C::kJ; ++n) {
      const float pv = vis[n] ? expf(s[n] - m_new) : 0.0f;
      ps[r * (kCols + 1) + c + C::kC * n] = pv;
      psum += pv;
    }
    l = l * alpha + group_sum<C::kC>(psum);
    m = m_new;
#pragma unroll
    for (int e = 0; e < C::kPer; ++e) o[e] *= alpha;
    __syncthreads();
    for (int jj = 0; jj < kCols; ++jj) {
      const float pj = ps[r * (kCols + 1) + jj];
#pragma unroll
      for (int e = 0; e < C::kPer; ++e) {
        const int d = c + C::kC * e;
        if (d < D) o[e] += pj * vs[jj * ld + d];
      }
    }
  }
  if (!row_ok) return;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  T* ob = out + ((b * p.Tq + i) * p.Hq + h) * p.D;
#pragma unroll
  for (int e = 0; e < C::kPer; ++e) {
    const int d = c + C::kC * e;
    if (d < D) ob[d] = from_float<T>(o[e] * inv);
  }
  if (lse && c == 0) lse[(b * p.Hq + h) * p.Tq + i] = l > 0.0f ? m + logf(l) : -INFINITY;
}

// ---- backward pass 1: dk, dv; one block per (key block, kv head, batch) ----
template <typename T, int kMaxD>
__global__ void __launch_bounds__(Config<kMaxD>::kThreads)
    attention_backward_kv_kernel(Params p, const T* __restrict__ q, const T* __restrict__ k,
                                 const T* __restrict__ v, const int32_t* __restrict__ segments,
                                 const T* __restrict__ out, const float* __restrict__ lse,
                                 const T* __restrict__ grad_out, T* __restrict__ grad_k,
                                 T* __restrict__ grad_v) {
  using C = Config<kMaxD>;
  extern __shared__ float smem[];
  const int D = static_cast<int>(p.D), ld = D + 1;
  float* ks = smem;                          // (kCols, ld)
  float* vs = ks + kCols * ld;               // (kCols, ld)
  float* qs = vs + kCols * ld;               // (kRows, ld)
  float* dos = qs + kRows * ld;              // (kRows, ld)
  float* ps = dos + kRows * ld;              // (kCols, kRows + 1): P^T
  float* dss = ps + kCols * (kRows + 1);     // (kCols, kRows + 1): dS^T
  float* lse_s = dss + kCols * (kRows + 1);  // (kRows)
  float* dl_s = lse_s + kRows;               // (kRows)
  const int64_t b = blockIdx.z, hk = blockIdx.y, j0 = int64_t(blockIdx.x) * kCols;
  const int jr = threadIdx.x / C::kC, c = threadIdx.x % C::kC;
  const int64_t j = j0 + jr;
  const int32_t* seg_b = segments ? segments + b * p.Tk : nullptr;
  const int32_t seg_j = (segments && j < p.Tk) ? seg_b[j] : 0;

  load_tile(ks, k + b * p.kv_batch_stride + hk * p.D, p.Hkv * p.D, j0, p.Tk, kCols, D, ld);
  load_tile(vs, v + b * p.kv_batch_stride + hk * p.D, p.Hkv * p.D, j0, p.Tk, kCols, D, ld);
  float dk[C::kPer], dv[C::kPer];
#pragma unroll
  for (int e = 0; e < C::kPer; ++e) dk[e] = dv[e] = 0.0f;

  // Query rows that can see key j0 start at j0 - q_offset.
  const int64_t first_i = j0 - p.q_offset > 0 ? j0 - p.q_offset : 0;
  for (int64_t h = hk * p.G; h < (hk + 1) * p.G; ++h) {
    const int64_t row_base = b * p.Tq * p.Hq + h;  // query row i of head h at (row_base + i * Hq) * D
    for (int64_t i0 = first_i / kRows * kRows; i0 < p.Tq; i0 += kRows) {
      bool vis[C::kI];
      bool any = false;
#pragma unroll
      for (int n = 0; n < C::kI; ++n) {
        const int64_t i = i0 + c + C::kC * n;
        vis[n] = j < p.Tk && i < p.Tq && j <= p.q_offset + i && (seg_b == nullptr || seg_b[i] == seg_j);
        any |= vis[n];
      }
      if (!__syncthreads_or(any)) continue;  // also ends the previous tile's reads
      load_tile(qs, q + row_base * p.D, p.Hq * p.D, i0, p.Tq, kRows, D, ld);
      load_tile(dos, grad_out + row_base * p.D, p.Hq * p.D, i0, p.Tq, kRows, D, ld);
      {
        // Row group r of the block computes lse and Dl of query row i0 + r.
        const int r = threadIdx.x / C::kC;
        const int64_t i = i0 + r;
        const bool ok = i < p.Tq;
        const int64_t off = (row_base + (ok ? i : 0) * p.Hq) * p.D;
        const float dl = row_dot<T, C::kC>(ok, grad_out + off, out + off, D, c);
        const float l = ok ? lse[(b * p.Hq + h) * p.Tq + i] : 0.0f;
        if (c == 0) {
          dl_s[r] = dl;
          lse_s[r] = l;
        }
      }
      __syncthreads();
      float s[C::kI], dp[C::kI];
#pragma unroll
      for (int n = 0; n < C::kI; ++n) s[n] = dp[n] = 0.0f;
      for (int d = 0; d < D; ++d) {
        const float kd = ks[jr * ld + d], vd = vs[jr * ld + d];
#pragma unroll
        for (int n = 0; n < C::kI; ++n) {
          const int il = c + C::kC * n;
          s[n] += kd * qs[il * ld + d];
          dp[n] += vd * dos[il * ld + d];
        }
      }
#pragma unroll
      for (int n = 0; n < C::kI; ++n) {
        const int il = c + C::kC * n;
        const float pv = vis[n] ? expf(s[n] * p.scale - lse_s[il]) : 0.0f;
        ps[jr * (kRows + 1) + il] = pv;
        dss[jr * (kRows + 1) + il] = vis[n] ? pv * (dp[n] - dl_s[il]) : 0.0f;
      }
      __syncthreads();
      for (int il = 0; il < kRows; ++il) {
        const float pv = ps[jr * (kRows + 1) + il], dsv = dss[jr * (kRows + 1) + il];
#pragma unroll
        for (int e = 0; e < C::kPer; ++e) {
          const int d = c + C::kC * e;
          if (d < D) {
            dv[e] += pv * dos[il * ld + d];
            dk[e] += dsv * qs[il * ld + d];
          }
        }
      }
    }
  }
  if (j >= p.Tk) return;
  const int64_t off = ((b * p.Tk + j) * p.Hkv + hk) * p.D;  // dense (B, Tk, Hkv, D)
#pragma unroll
  for (int e = 0; e < C::kPer; ++e) {
    const int d = c + C::kC * e;
    if (d < D) {
      grad_k[off + d] = from_float<T>(dk[e] * p.scale);
      grad_v[off + d] = from_float<T>(dv[e]);
    }
  }
}

// ---- backward pass 2: dq; one block per (query block, head, batch) ----
template <typename T, int kMaxD>
__global__ void __launch_bounds__(Config<kMaxD>::kThreads)
    attention_backward_q_kernel(Params p, const T* __restrict__ q, const T* __restrict__ k,
                                const T* __restrict__ v, const int32_t* __restrict__ segments,
                                const T* __restrict__ out, const float* __restrict__ lse,
                                const T* __restrict__ grad_out, T* __restrict__ grad_q) {
  using C = Config<kMaxD>;
  extern __shared__ float smem[];
  const int D = static_cast<int>(p.D), ld = D + 1;
  float* qs = smem;              // (kRows, ld)
  float* dos = qs + kRows * ld;  // (kRows, ld)
  float* ks = dos + kRows * ld;  // (kCols, ld)
  float* vs = ks + kCols * ld;   // (kCols, ld)
  float* dss = vs + kCols * ld;  // (kRows, kCols + 1)
  const int64_t b = blockIdx.z, h = blockIdx.y, hk = h / p.G, i0 = int64_t(blockIdx.x) * kRows;
  const int r = threadIdx.x / C::kC, c = threadIdx.x % C::kC;
  const int64_t i = i0 + r;
  const bool row_ok = i < p.Tq;
  const int64_t row_base = b * p.Tq * p.Hq + h;
  const T* kb = k + b * p.kv_batch_stride + hk * p.D;
  const T* vb = v + b * p.kv_batch_stride + hk * p.D;
  const int32_t* seg_b = segments ? segments + b * p.Tk : nullptr;
  const int32_t seg_i = (segments && row_ok) ? segments[b * p.Tq + i] : 0;

  load_tile(qs, q + row_base * p.D, p.Hq * p.D, i0, p.Tq, kRows, D, ld);
  load_tile(dos, grad_out + row_base * p.D, p.Hq * p.D, i0, p.Tq, kRows, D, ld);
  const int64_t row_off = (row_base + (row_ok ? i : 0) * p.Hq) * p.D;
  const float dl = row_dot<T, C::kC>(row_ok, grad_out + row_off, out + row_off, D, c);
  const float l = row_ok ? lse[(b * p.Hq + h) * p.Tq + i] : 0.0f;
  float dq[C::kPer];
#pragma unroll
  for (int e = 0; e < C::kPer; ++e) dq[e] = 0.0f;

  const int64_t i_last = (i0 + kRows < p.Tq ? i0 + kRows : p.Tq) - 1;
  const int64_t k_end = p.q_offset + i_last + 1 < p.Tk ? p.q_offset + i_last + 1 : p.Tk;
  for (int64_t j0 = 0; j0 < k_end; j0 += kCols) {
    bool vis[C::kJ];
    bool any = false;
#pragma unroll
    for (int n = 0; n < C::kJ; ++n) {
      vis[n] = row_ok && visible(p, seg_b, i, seg_i, j0 + c + C::kC * n);
      any |= vis[n];
    }
    if (!__syncthreads_or(any)) continue;
    load_tile(ks, kb, p.Hkv * p.D, j0, p.Tk, kCols, D, ld);
    load_tile(vs, vb, p.Hkv * p.D, j0, p.Tk, kCols, D, ld);
    __syncthreads();
    float s[C::kJ], dp[C::kJ];
#pragma unroll
    for (int n = 0; n < C::kJ; ++n) s[n] = dp[n] = 0.0f;
    for (int d = 0; d < D; ++d) {
      const float qd = qs[r * ld + d], dod = dos[r * ld + d];
#pragma unroll
      for (int n = 0; n < C::kJ; ++n) {
        const int jl = c + C::kC * n;
        s[n] += qd * ks[jl * ld + d];
        dp[n] += dod * vs[jl * ld + d];
      }
    }
#pragma unroll
    for (int n = 0; n < C::kJ; ++n) {
      const float pv = vis[n] ? expf(s[n] * p.scale - l) : 0.0f;
      dss[r * (kCols + 1) + c + C::kC * n] = vis[n] ? pv * (dp[n] - dl) : 0.0f;
    }
    __syncthreads();
    for (int jj = 0; jj < kCols; ++jj) {
      const float dsv = dss[r * (kCols + 1) + jj];
#pragma unroll
      for (int e = 0; e < C::kPer; ++e) {
        const int d = c + C::kC * e;
        if (d < D) dq[e] += dsv * ks[jj * ld + d];
      }
    }
  }
  if (!row_ok) return;
  T* dqb = grad_q + (row_base + i * p.Hq) * p.D;
#pragma unroll
  for (int e = 0; e < C::kPer; ++e) {
    const int d = c + C::kC * e;
    if (d < D) dqb[d] = from_float<T>(dq[e] * p.scale);
  }
}

Params make_params(const AttentionDims& d, float scale) {
  if (d.B <= 0 || d.Tq <= 0 || d.Tk <= 0 || d.Hq <= 0 || d.Hkv <= 0 || d.D <= 0)
    throw std::invalid_argument("attention: every dimension must be positive");
  if (d.Hq % d.Hkv != 0)
    throw std::invalid_argument("attention: Hq (" + std::to_string(d.Hq) + ") is not a multiple of Hkv (" +
                                std::to_string(d.Hkv) + ")");
  if (d.D > kAttentionMaxHeadDim)
    throw std::invalid_argument("attention: head dim " + std::to_string(d.D) + " is above the own kernel's " +
                                std::to_string(kAttentionMaxHeadDim));
  if (d.kv_batch_stride < d.Tk * d.Hkv * d.D)
    throw std::invalid_argument("attention: kv_batch_stride is smaller than Tk * Hkv * D");
  if (d.q_offset < 0) throw std::invalid_argument("attention: q_offset is negative");
  if (d.B > 65535 || d.Hq > 65535) throw std::invalid_argument("attention: B or Hq above 65535");
  return Params{d.B, d.Tq, d.Tk, d.Hq, d.Hkv, d.D, d.Hq / d.Hkv, d.q_offset, d.kv_batch_stride, scale};
}

unsigned blocks_of(int64_t n, int per) { return static_cast<unsigned>((n + per - 1) / per); }

template <typename Kernel>
void raise_smem_limit(Kernel kernel, size_t bytes) {
  CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <typename T, int kMaxD>
void forward_impl(const Params& p, const T* q, const T* k, const T* v, const int32_t* segments, T* out,
                  float* lse, cudaStream_t stream) {
  using C = Config<kMaxD>;
  const size_t ld = static_cast<size_t>(p.D) + 1;
  const size_t smem = ((kRows + 2 * kCols) * ld + kRows * (kCols + 1)) * sizeof(float);
  auto kernel = attention_forward_kernel<T, kMaxD>;
  raise_smem_limit(kernel, smem);
  const dim3 grid(blocks_of(p.Tq, kRows), static_cast<unsigned>(p.Hq), static_cast<unsigned>(p.B));
  kernel<<<grid, C::kThreads, smem, stream>>>(p, q, k, v, segments, out, lse);
  CUDA_CHECK_LAUNCH();
}

template <typename T, int kMaxD>
void backward_impl(const Params& p, const T* q, const T* k, const T* v, const int32_t* segments, const T* out,
                   const float* lse, const T* grad_out, T* grad_q, T* grad_k, T* grad_v,
                   cudaStream_t stream) {
  using C = Config<kMaxD>;
  const size_t ld = static_cast<size_t>(p.D) + 1;
  const size_t smem_kv = ((2 * kCols + 2 * kRows) * ld + 2 * kCols * (kRows + 1) + 2 * kRows) * sizeof(float);
  auto kv_kernel = attention_backward_kv_kernel<T, kMaxD>;
  raise_smem_limit(kv_kernel, smem_kv);
  const dim3 grid_kv(blocks_of(p.Tk, kCols), static_cast<unsigned>(p.Hkv), static_cast<unsigned>(p.B));
  kv_kernel<<<grid_kv, C::kThreads, smem_kv, stream>>>(p, q, k, v, segments, out, lse, grad_out, grad_k,
                                                       grad_v);
  CUDA_CHECK_LAUNCH();

  const size_t smem_q = ((2 * kRows + 2 * kCols) * ld + kRows * (kCols + 1)) * sizeof(float);
  auto q_kernel = attention_backward_q_kernel<T, kMaxD>;
  raise_smem_limit(q_kernel, smem_q);
  const dim3 grid_q(blocks_of(p.Tq, kRows), static_cast<unsigned>(p.Hq), static_cast<unsigned>(p.B));
  q_kernel<<<grid_q, C::kThreads, smem_q, stream>>>(p, q, k, v, segments, out, lse, grad_out, grad_q);
  CUDA_CHECK_LAUNCH();
}

void check_segments(const AttentionDims& d, const int32_t* segments) {
  if (segments && (d.Tq != d.Tk || d.q_offset != 0))
    throw std::invalid_argument("attention: segments need Tq == Tk and q_offset == 0");
}

// ---- segment runs -> ragged offsets ----

// Exclusive prefix sum of x over the block (blockDim.x a multiple of 32, at most 1024); *total gets the sum.
__device__ int block_exclusive_scan(int x, int* total, int* warp_sums) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  int incl = x;
#pragma unroll
  for (int off = 1; off < 32; off *= 2) {
    const int y = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += y;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int w = lane < warps ? warp_sums[lane] : 0;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
      const int y = __shfl_up_sync(0xffffffffu, w, off);
      if (lane >= off) w += y;
    }
    if (lane < warps) warp_sums[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  const int before = warp > 0 ? warp_sums[warp - 1] : 0;
  *total = warp_sums[warps - 1];
  __syncthreads();  // warp_sums is reused by the next call
  return before + incl - x;
}

__global__ void segment_offsets_kernel(const int32_t* __restrict__ seg, int64_t B, int64_t T, int64_t Hq,
                                       int64_t q_token_elems, int64_t kv_token_elems, int64_t kv_batch_elems,
                                       int64_t max_seq, int32_t* __restrict__ seq_len,
                                       int32_t* __restrict__ q_off, int32_t* __restrict__ kv_off,
                                       int32_t* __restrict__ stats_off, int32_t* __restrict__ run_count) {
  __shared__ int warp_sums[32];
  const int64_t N = B * T;
  for (int64_t s = threadIdx.x; s <= max_seq; s += blockDim.x) {  // empty sequences sit at the end
    if (s < max_seq) seq_len[s] = 0;
    q_off[s] = static_cast<int32_t>(N * q_token_elems);
    kv_off[s] = static_cast<int32_t>((B - 1) * kv_batch_elems + T * kv_token_elems);
    stats_off[s] = static_cast<int32_t>(B * Hq * T);
  }
  __syncthreads();
  // Starts of runs: the s-th start writes the offsets of sequence s, and its token index into seq_len[s].
  int64_t carry = 0;
  for (int64_t base = 0; base < N; base += blockDim.x) {
    const int64_t idx = base + threadIdx.x;
    const bool start = idx < N && (idx % T == 0 || seg[idx] != seg[idx - 1]);
    int total = 0;
    const int64_t s = carry + block_exclusive_scan(start ? 1 : 0, &total, warp_sums);
    if (start && s < max_seq) {
      const int64_t b = idx / T, t0 = idx % T;
      q_off[s] = static_cast<int32_t>(idx * q_token_elems);
      kv_off[s] = static_cast<int32_t>(b * kv_batch_elems + t0 * kv_token_elems);
      stats_off[s] = static_cast<int32_t>(b * Hq * T + t0);
      seq_len[s] = static_cast<int32_t>(idx);
    }
    carry += total;
  }
  __syncthreads();  // the starts are visible to every thread of the block
  // Ends of runs: the s-th end turns seq_len[s] into the run's length.
  carry = 0;
  for (int64_t base = 0; base < N; base += blockDim.x) {
    const int64_t idx = base + threadIdx.x;
    const bool end = idx < N && (idx % T == T - 1 || seg[idx] != seg[idx + 1]);
    int total = 0;
    const int64_t s = carry + block_exclusive_scan(end ? 1 : 0, &total, warp_sums);
    if (end && s < max_seq) seq_len[s] = static_cast<int32_t>(idx + 1 - seq_len[s]);
    carry += total;
  }
  if (run_count && threadIdx.x == 0) *run_count = static_cast<int32_t>(carry);
}

}  // namespace

template <typename T>
void attention_forward(const AttentionDims& d, const T* q, const T* k, const T* v, const int32_t* segments,
                       float scale, T* out, float* lse, cudaStream_t stream) {
  const Params p = make_params(d, scale);
  check_segments(d, segments);
  if (d.D <= 64)
    forward_impl<T, 64>(p, q, k, v, segments, out, lse, stream);
  else if (d.D <= 128)
    forward_impl<T, 128>(p, q, k, v, segments, out, lse, stream);
  else
    forward_impl<T, 256>(p, q, k, v, segments, out, lse, stream);
}

template <typename T>
void attention_backward(const AttentionDims& d, const T* q, const T* k, const T* v, const int32_t* segments,
                        float scale, const T* out, const float* lse, const T* grad_out, T* grad_q, T* grad_k,
                        T* grad_v, cudaStream_t stream) {
  const Params p = make_params(d, scale);
  check_segments(d, segments);
  if (d.D <= 64)
    backward_impl<T, 64>(p, q, k, v, segments, out, lse, grad_out, grad_q, grad_k, grad_v, stream);
  else if (d.D <= 128)
    backward_impl<T, 128>(p, q, k, v, segments, out, lse, grad_out, grad_q, grad_k, grad_v, stream);
  else
    backward_impl<T, 256>(p, q, k, v, segments, out, lse, grad_out, grad_q, grad_k, grad_v, stream);
}

void attention_segment_offsets(const int32_t* segments, int64_t B, int64_t T, int64_t Hq,
                               int64_t q_token_elems, int64_t kv_token_elems, int64_t kv_batch_elems,
                               int64_t max_sequences, int32_t* seq_len, int32_t* q_offset_elems,
                               int32_t* kv_offset_elems, int32_t* stats_offset_elems, int32_t* run_count,
                               cudaStream_t stream) {
  if (B <= 0 || T <= 0 || max_sequences <= 0)
    throw std::invalid_argument("attention_segment_offsets: B, T and max_sequences must be positive");
  segment_offsets_kernel<<<1, 1024, 0, stream>>>(segments, B, T, Hq, q_token_elems, kv_token_elems,
                                                 kv_batch_elems, max_sequences, seq_len, q_offset_elems,
                                                 kv_offset_elems, stats_offset_elems, run_count);
  CUDA_CHECK_LAUNCH();
}

template void attention_forward<float>(const AttentionDims&, const float*, const float*, const float*,
                                       const int32_t*, float, float*, float*, cudaStream_t);
template void attention_forward<__nv_bfloat16>(const AttentionDims&, const __nv_bfloat16*,
                                               const __nv_bfloat16*, const __nv_bfloat16*, const int32_t*,
                                               float, __nv_bfloat16*, float*, cudaStream_t);
template void attention_backward<float>(const AttentionDims&, const float*, const float*, const float*,
                                        const int32_t*, float, const float*, const float*, const float*,
                                        float*, float*, float*, cudaStream_t);
template void attention_backward<__nv_bfloat16>(const AttentionDims&, const __nv_bfloat16*,
                                                const __nv_bfloat16*, const __nv_bfloat16*, const int32_t*,
                                                float, const __nv_bfloat16*, const float*,
                                                const __nv_bfloat16*, __nv_bfloat16*, __nv_bfloat16*,
                                                __nv_bfloat16*, cudaStream_t);

}  // namespace engine::cuda
