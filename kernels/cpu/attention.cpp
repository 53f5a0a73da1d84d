#include "kernels/cpu/attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/thread_pool.hpp"
#include "kernels/cpu/vec.hpp"

namespace engine::cpu {

namespace {

// kt (D, n_keys, leading dimension ld) = rows [0, n_keys) of one head of k, whose row j starts at src + j *
// stride.
template <typename T>
void transpose_head(const T* src, int64_t stride, int64_t n_keys, int64_t D, T* kt, int64_t ld) {
  for (int64_t j = 0; j < n_keys; ++j)
    for (int64_t d = 0; d < D; ++d) kt[d * ld + j] = src[j * stride + d];
}

// s[j] = scale * sum_d x[d] * kt[d, j] for j < n: D passes of a contiguous axpy over the keys (vectorises
// over j, no horizontal sums; the sum over d runs in d order for every j).
template <typename T>
ENGINE_SIMD_CLONES void row_scores(const T* x, const T* kt, int64_t ld, int64_t D, int64_t n, T scale, T* s) {
  for (int64_t j = 0; j < n; ++j) s[j] = T(0);
  for (int64_t d = 0; d < D; ++d) {
    const T xd = x[d];
    const T* kr = kt + d * ld;
    for (int64_t j = 0; j < n; ++j) s[j] += xd * kr[j];
  }
  for (int64_t j = 0; j < n; ++j) s[j] *= scale;
}

// o (D) = sum_j p[j] * rows[j] (rows D-contiguous, `stride` apart), skipping zero weights (masked keys).
template <typename T>
ENGINE_SIMD_CLONES void row_weighted_sum(const T* p, const T* rows, int64_t stride, int64_t n, int64_t D,
                                         T* o) {
  for (int64_t d = 0; d < D; ++d) o[d] = T(0);
  for (int64_t j = 0; j < n; ++j) {
    const T pj = p[j];
    if (pj == T(0)) continue;
    const T* r = rows + j * stride;
    for (int64_t d = 0; d < D; ++d) o[d] += pj * r[d];
  }
}

// acc[d, j] += x[d] * w[j] for d < D, j < n (leading dimension ld): the rank-1 update of a transposed
// gradient.
template <typename T>
ENGINE_SIMD_CLONES void rank1_update(const T* x, const T* w, int64_t D, int64_t n, T* acc, int64_t ld) {
  for (int64_t d = 0; d < D; ++d) {
    const T xd = x[d];
    T* a = acc + d * ld;
    for (int64_t j = 0; j < n; ++j) a[j] += xd * w[j];
  }
}

// Softmax weights of one row in place: s[j] -> exp(s[j] - max) / sum for visible keys, 0 for masked ones.
// Returns the row's log-sum-exp. Masked keys are set to -inf first: fast_exp turns them into ~1e-38, which
// the sum (>= 1, from the maximum) absorbs exactly, and they are zeroed afterwards.
template <typename T>
T row_softmax_weights(T* s, int64_t n, const int32_t* seg_b, int64_t i) {
  if (seg_b)
    for (int64_t j = 0; j < n; ++j)
      if (seg_b[j] != seg_b[i]) s[j] = -std::numeric_limits<T>::infinity();
  const T m = row_max(s, n);
  const T sum = exp_shifted_sum(s, m, s, n);
  const T inv = T(1) / sum;
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
  if (seg_b)
    for (int64_t j = 0; j < n; ++j)
      if (seg_b[j] != seg_b[i]) s[j] = T(0);
  return m + std::log(sum);
}

}  // namespace

template <typename T>
void attention_forward(ThreadPool& pool, const AttentionDims& d, const T* q, const T* k, const T* v,
                       const int32_t* segments, T scale, T* out, T* lse) {
  const int64_t B = d.B, Tq = d.Tq, Tk = d.Tk, Hq = d.Hq, Hkv = d.Hkv, D = d.D, G = Hq / Hkv;
  const int64_t rows = B * Hq * Tq;  // one item = one (b, h, i) query row, rows of one (b, h) adjacent
  const int64_t grain = std::max<int64_t>(1, std::min<int64_t>(Tq, 64));
  pool.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    std::vector<T> kt(static_cast<size_t>(D * Tk));  // (D, Tk) keys of the current (b, kv head), transposed
    std::vector<T> s(static_cast<size_t>(Tk));       // (Tk) scores, then weights, of one row
    int64_t cached = -1;                             // b * Hkv + kv head held in kt
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r % Tq, h = (r / Tq) % Hq, b = r / (Tq * Hq), hk = h / G;
      const T* kb = k + b * d.kv_batch_stride + hk * D;  // key row j at kb + j * Hkv * D
      const T* vb = v + b * d.kv_batch_stride + hk * D;
      if (cached != b * Hkv + hk) {
        transpose_head(kb, Hkv * D, Tk, D, kt.data(), Tk);
        cached = b * Hkv + hk;
      }
      const int64_t n = d.q_offset + i + 1;  // causal: keys [0, n)
      const int32_t* seg_b = segments ? segments + b * Tq : nullptr;
      const int64_t row = (b * Tq + i) * Hq + h;
      row_scores(q + row * D, kt.data(), Tk, D, n, scale, s.data());
      const T l = row_softmax_weights(s.data(), n, seg_b, i);
      row_weighted_sum(s.data(), vb, Hkv * D, n, D, out + row * D);
      if (lse) lse[(b * Hq + h) * Tq + i] = l;
    }
  });
}

namespace {

// Backward with one task per (b, kv head): owns dk and dv of the head, walks its G query heads and rows.
template <typename T>
void backward_per_kv_head(ThreadPool& pool, const AttentionDims& d, const T* q, const T* k, const T* v,
                          const int32_t* segments, T scale, const T* out, const T* lse, const T* grad_out,
                          T* grad_q, T* grad_k, T* grad_v) {
  const int64_t B = d.B, Tq = d.Tq, Tk = d.Tk, Hq = d.Hq, Hkv = d.Hkv, D = d.D, G = Hq / Hkv;
  pool.parallel_for(B * Hkv, 1, [&](int64_t t0, int64_t t1) {
    // (D, Tk) transposed keys, values and their gradient accumulators for one (b, kv head); (Tk) row buffers
    std::vector<T> kt(static_cast<size_t>(D * Tk)), vt(kt.size()), dkt(kt.size()), dvt(kt.size());
    std::vector<T> p(static_cast<size_t>(Tk)), ds(static_cast<size_t>(Tk));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / Hkv, hk = t % Hkv;
      const T* kb = k + b * d.kv_batch_stride + hk * D;  // row j at kb + j * Hkv * D
      const T* vb = v + b * d.kv_batch_stride + hk * D;
      transpose_head(kb, Hkv * D, Tk, D, kt.data(), Tk);
      transpose_head(vb, Hkv * D, Tk, D, vt.data(), Tk);
      std::fill(dkt.begin(), dkt.end(), T(0));
      std::fill(dvt.begin(), dvt.end(), T(0));
      const int32_t* seg_b = segments ? segments + b * Tq : nullptr;
      for (int64_t h = hk * G; h < (hk + 1) * G; ++h) {
        for (int64_t i = 0; i < Tq; ++i) {
          const int64_t row = (b * Tq + i) * Hq + h;
          const T* qi = q + row * D;
          const T* doi = grad_out + row * D;
          const T l = lse[(b * Hq + h) * Tq + i];
          const T dl = dot(doi, out + row * D, D);  // Dl_i = dO_i . O_i
          const int64_t n = d.q_offset + i + 1;
          row_scores(qi, kt.data(), Tk, D, n, scale, p.data());   // s_ij
          row_scores(doi, vt.data(), Tk, D, n, T(1), ds.data());  // dP_ij = dO_i . v_j
          exp_shifted_sum(p.data(), l, p.data(), n);              // P_ij = exp(s_ij - lse_i)
          for (int64_t j = 0; j < n; ++j)
            ds[static_cast<size_t>(j)] =
                scale * p[static_cast<size_t>(j)] * (ds[static_cast<size_t>(j)] - dl);
          if (seg_b)
            for (int64_t j = 0; j < n; ++j)
              if (seg_b[j] != seg_b[i]) p[static_cast<size_t>(j)] = ds[static_cast<size_t>(j)] = T(0);
          row_weighted_sum(ds.data(), kb, Hkv * D, n, D, grad_q + row * D);  // dq_i = scale sum_j dS_ij k_j
          rank1_update(qi, ds.data(), D, n, dkt.data(), Tk);                 // dk_j += scale dS_ij q_i
          rank1_update(doi, p.data(), D, n, dvt.data(), Tk);                 // dv_j += P_ij dO_i
        }
      }
      T* dkb = grad_k + b * Tk * Hkv * D + hk * D;  // dense (B, Tk, Hkv, D)
      T* dvb = grad_v + b * Tk * Hkv * D + hk * D;
      for (int64_t j = 0; j < Tk; ++j)
        for (int64_t e = 0; e < D; ++e) {
          dkb[j * Hkv * D + e] = dkt[static_cast<size_t>(e * Tk + j)];
          dvb[j * Hkv * D + e] = dvt[static_cast<size_t>(e * Tk + j)];
        }
    }
  });
}

// Backward for few (b, kv head) pairs (B * Hkv < kSplitBelow), so that all threads get work: pass 1 splits
// over query rows and computes dq; pass 2 splits over (b, kv head, block of kKeyBlock keys) and computes dk,
// dv of its keys from every row that sees them. P and dP are recomputed in both passes (14 D instead of 10 D
// FLOPs per visible pair). Which form runs depends on the shape only, never on the thread count.
constexpr int64_t kSplitBelow = 8;
constexpr int64_t kKeyBlock = 32;

template <typename T>
void backward_split(ThreadPool& pool, const AttentionDims& d, const T* q, const T* k, const T* v,
                    const int32_t* segments, T scale, const T* out, const T* lse, const T* grad_out,
                    T* grad_q, T* grad_k, T* grad_v) {
  const int64_t B = d.B, Tq = d.Tq, Tk = d.Tk, Hq = d.Hq, Hkv = d.Hkv, D = d.D, G = Hq / Hkv;
  std::vector<T> dl(static_cast<size_t>(B * Hq * Tq));  // (B, Hq, Tq): Dl_i = dO_i . O_i
  const int64_t rows = B * Hq * Tq;
  pool.parallel_for(rows, std::max<int64_t>(1, std::min<int64_t>(Tq, 64)), [&](int64_t r0, int64_t r1) {
    std::vector<T> kt(static_cast<size_t>(D * Tk)), vt(kt.size());  // (D, Tk) of the current (b, kv head)
    std::vector<T> p(static_cast<size_t>(Tk)), ds(static_cast<size_t>(Tk));
    int64_t cached = -1;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r % Tq, h = (r / Tq) % Hq, b = r / (Tq * Hq), hk = h / G;
      const T* kb = k + b * d.kv_batch_stride + hk * D;
      const T* vb = v + b * d.kv_batch_stride + hk * D;
      if (cached != b * Hkv + hk) {
        transpose_head(kb, Hkv * D, Tk, D, kt.data(), Tk);
        transpose_head(vb, Hkv * D, Tk, D, vt.data(), Tk);
        cached = b * Hkv + hk;
      }
      const int64_t row = (b * Tq + i) * Hq + h, n = d.q_offset + i + 1;
      const T* doi = grad_out + row * D;
      const T dli = dot(doi, out + row * D, D);
      dl[static_cast<size_t>(r)] = dli;  // r == (b * Hq + h) * Tq + i
      row_scores(q + row * D, kt.data(), Tk, D, n, scale, p.data());
      exp_shifted_sum(p.data(), lse[r], p.data(), n);
      row_scores(doi, vt.data(), Tk, D, n, T(1), ds.data());
      const int32_t* seg_b = segments ? segments + b * Tq : nullptr;
      for (int64_t j = 0; j < n; ++j)
        ds[static_cast<size_t>(j)] = scale * p[static_cast<size_t>(j)] * (ds[static_cast<size_t>(j)] - dli);
      if (seg_b)
        for (int64_t j = 0; j < n; ++j)
          if (seg_b[j] != seg_b[i]) ds[static_cast<size_t>(j)] = T(0);
      row_weighted_sum(ds.data(), kb, Hkv * D, n, D, grad_q + row * D);
    }
  });
  const int64_t blocks = (Tk + kKeyBlock - 1) / kKeyBlock;
  pool.parallel_for(B * Hkv * blocks, 1, [&](int64_t t0, int64_t t1) {
    // (D, kKeyBlock) transposed keys, values and gradient accumulators of one key block; (kKeyBlock) rows
    std::vector<T> kt(static_cast<size_t>(D * kKeyBlock)), vt(kt.size()), dkt(kt.size()), dvt(kt.size());
    std::vector<T> p(static_cast<size_t>(kKeyBlock)), ds(static_cast<size_t>(kKeyBlock));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t blk = t % blocks, b = t / blocks / Hkv, hk = t / blocks % Hkv;
      const int64_t j0 = blk * kKeyBlock, w = std::min(Tk, j0 + kKeyBlock) - j0;
      const T* kb = k + b * d.kv_batch_stride + hk * D + j0 * Hkv * D;  // key j0 + j at kb + j * Hkv * D
      const T* vb = v + b * d.kv_batch_stride + hk * D + j0 * Hkv * D;
      transpose_head(kb, Hkv * D, w, D, kt.data(), kKeyBlock);
      transpose_head(vb, Hkv * D, w, D, vt.data(), kKeyBlock);
      std::fill(dkt.begin(), dkt.end(), T(0));
      std::fill(dvt.begin(), dvt.end(), T(0));
      const int32_t* seg_b = segments ? segments + b * Tq : nullptr;
      for (int64_t h = hk * G; h < (hk + 1) * G; ++h) {
        for (int64_t i = std::max<int64_t>(0, j0 - d.q_offset); i < Tq; ++i) {
          const int64_t n = std::min(w, d.q_offset + i + 1 - j0);  // visible keys of this block
          const int64_t row = (b * Tq + i) * Hq + h, r = (b * Hq + h) * Tq + i;
          const T* qi = q + row * D;
          const T* doi = grad_out + row * D;
          row_scores(qi, kt.data(), kKeyBlock, D, n, scale, p.data());
          exp_shifted_sum(p.data(), lse[r], p.data(), n);
          row_scores(doi, vt.data(), kKeyBlock, D, n, T(1), ds.data());
          const T dli = dl[static_cast<size_t>(r)];
          for (int64_t j = 0; j < n; ++j)
            ds[static_cast<size_t>(j)] =
                scale * p[static_cast<size_t>(j)] * (ds[static_cast<size_t>(j)] - dli);
          if (seg_b)
            for (int64_t j = 0; j < n; ++j)
              if (seg_b[j0 + j] != seg_b[i]) p[static_cast<size_t>(j)] = ds[static_cast<size_t>(j)] = T(0);
          rank1_update(qi, ds.data(), D, n, dkt.data(), kKeyBlock);
          rank1_update(doi, p.data(), D, n, dvt.data(), kKeyBlock);
        }
      }
      T* dkb = grad_k + b * Tk * Hkv * D + hk * D;  // dense (B, Tk, Hkv, D)
      T* dvb = grad_v + b * Tk * Hkv * D + hk * D;
      for (int64_t j = 0; j < w; ++j)
        for (int64_t e = 0; e < D; ++e) {
          dkb[(j0 + j) * Hkv * D + e] = dkt[static_cast<size_t>(e * kKeyBlock + j)];
          dvb[(j0 + j) * Hkv * D + e] = dvt[static_cast<size_t>(e * kKeyBlock + j)];
        }
    }
  });
}

}  // namespace

template <typename T>
void attention_backward(ThreadPool& pool, const AttentionDims& d, const T* q, const T* k, const T* v,
                        const int32_t* segments, T scale, const T* out, const T* lse, const T* grad_out,
                        T* grad_q, T* grad_k, T* grad_v) {
  if (d.B * d.Hkv >= kSplitBelow)
    backward_per_kv_head(pool, d, q, k, v, segments, scale, out, lse, grad_out, grad_q, grad_k, grad_v);
  else
    backward_split(pool, d, q, k, v, segments, scale, out, lse, grad_out, grad_q, grad_k, grad_v);
}

template void attention_forward<float>(ThreadPool&, const AttentionDims&, const float*, const float*,
                                       const float*, const int32_t*, float, float*, float*);
template void attention_forward<double>(ThreadPool&, const AttentionDims&, const double*, const double*,
                                        const double*, const int32_t*, double, double*, double*);
template void attention_backward<float>(ThreadPool&, const AttentionDims&, const float*, const float*,
                                        const float*, const int32_t*, float, const float*, const float*,
                                        const float*, float*, float*, float*);
template void attention_backward<double>(ThreadPool&, const AttentionDims&, const double*, const double*,
                                         const double*, const int32_t*, double, const double*, const double*,
                                         const double*, double*, double*, double*);

}  // namespace engine::cpu
