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
// Whether key j is visible from query row i (key position q_offset + i).
inline bool visible(const int32_t* seg_b, int64_t i, int64_t j) { return !seg_b || seg_b[j] == seg_b[i]; }
}  // namespace

template <typename T>
void attention_forward(ThreadPool& pool, const AttentionDims& d, const T* q, const T* k, const T* v,
                       const int32_t* segments, T scale, T* out, T* lse) {
  const int64_t B = d.B, Tq = d.Tq, Hq = d.Hq, Hkv = d.Hkv, D = d.D, G = Hq / Hkv;
  const int64_t rows = B * Hq * Tq;  // one task item = one (b, h, i) query row
  const int64_t grain = std::max<int64_t>(1, 256 / std::max<int64_t>(1, Tq / 64 + 1));
  pool.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    std::vector<T> score(static_cast<size_t>(d.Tk));  // (Tk) scores, then probabilities, of one row
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r % Tq, h = (r / Tq) % Hq, b = r / (Tq * Hq);
      const int64_t hk = h / G;
      const T* qi = q + ((b * Tq + i) * Hq + h) * D;     // (D)
      const T* kb = k + b * d.kv_batch_stride + hk * D;  // row j at kb + j * Hkv * D
      const T* vb = v + b * d.kv_batch_stride + hk * D;
      const int32_t* seg_b = segments ? segments + b * Tq : nullptr;
      const int64_t last = d.q_offset + i;  // causal: keys 0..last
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j <= last; ++j) {
        if (!visible(seg_b, i, j)) continue;
        const T s = scale * dot(qi, kb + j * Hkv * D, D);
        score[static_cast<size_t>(j)] = s;
        m = std::max(m, s);
      }
      T sum = 0;
      for (int64_t j = 0; j <= last; ++j) {
        if (!visible(seg_b, i, j)) continue;
        const T p = std::exp(score[static_cast<size_t>(j)] - m);
        score[static_cast<size_t>(j)] = p;
        sum += p;
      }
      T* o = out + ((b * Tq + i) * Hq + h) * D;  // (D)
      std::fill(o, o + D, T(0));
      const T inv = T(1) / sum;
      for (int64_t j = 0; j <= last; ++j) {
        if (!visible(seg_b, i, j)) continue;
        axpy(score[static_cast<size_t>(j)] * inv, vb + j * Hkv * D, o, D);
      }
      if (lse) lse[(b * Hq + h) * Tq + i] = m + std::log(sum);
    }
  });
}

template <typename T>
void attention_backward(ThreadPool& pool, const AttentionDims& d, const T* q, const T* k, const T* v,
                        const int32_t* segments, T scale, const T* out, const T* lse, const T* grad_out,
                        T* grad_q, T* grad_k, T* grad_v) {
  const int64_t B = d.B, Tq = d.Tq, Tk = d.Tk, Hq = d.Hq, Hkv = d.Hkv, D = d.D, G = Hq / Hkv;
  pool.parallel_for(B * Hkv, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> p(static_cast<size_t>(Tk)), ds(static_cast<size_t>(Tk));  // (Tk) row buffers
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / Hkv, hk = t % Hkv;
      const T* kb = k + b * d.kv_batch_stride + hk * D;  // row j at kb + j * Hkv * D
      const T* vb = v + b * d.kv_batch_stride + hk * D;
      T* dkb = grad_k + b * Tk * Hkv * D + hk * D;  // dense (B, Tk, Hkv, D)
      T* dvb = grad_v + b * Tk * Hkv * D + hk * D;
      for (int64_t j = 0; j < Tk; ++j) {
        std::fill(dkb + j * Hkv * D, dkb + j * Hkv * D + D, T(0));
        std::fill(dvb + j * Hkv * D, dvb + j * Hkv * D + D, T(0));
      }
      const int32_t* seg_b = segments ? segments + b * Tq : nullptr;
      for (int64_t h = hk * G; h < (hk + 1) * G; ++h) {
        for (int64_t i = 0; i < Tq; ++i) {
          const int64_t row = (b * Tq + i) * Hq + h;
          const T* qi = q + row * D;
          const T* doi = grad_out + row * D;
          const T l = lse[(b * Hq + h) * Tq + i];
          const T dl = dot(doi, out + row * D, D);
          const int64_t last = d.q_offset + i;
          for (int64_t j = 0; j <= last; ++j) {
            if (!visible(seg_b, i, j)) continue;
            const T pij = std::exp(scale * dot(qi, kb + j * Hkv * D, D) - l);
            p[static_cast<size_t>(j)] = pij;
            ds[static_cast<size_t>(j)] = pij * (dot(doi, vb + j * Hkv * D, D) - dl);
          }
          T* dqi = grad_q + row * D;
          std::fill(dqi, dqi + D, T(0));
          for (int64_t j = 0; j <= last; ++j) {
            if (!visible(seg_b, i, j)) continue;
            const T dsj = scale * ds[static_cast<size_t>(j)];
            axpy(dsj, kb + j * Hkv * D, dqi, D);
            axpy(dsj, qi, dkb + j * Hkv * D, D);
            axpy(p[static_cast<size_t>(j)], doi, dvb + j * Hkv * D, D);
          }
        }
      }
    }
  });
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
