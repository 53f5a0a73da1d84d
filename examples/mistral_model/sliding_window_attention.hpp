// sliding_window_attention.hpp: causal grouped-query attention restricted to a window of W tokens, as a
// custom op with this plugin's own CPU kernel (host->op_register), for the batches where Mistral's window
// bites.
//
//   q (B,T,Hq,D), k and v (B,T,Hkv,D) f32 contiguous, seg (B,T) i32 -> o (B,T,Hq,D) f32
//   query i of row b attends key j iff  j <= i,  i - j < W,  seg[b,i] == seg[b,j]
//     (transformers' sliding_window_causal_mask: kv_idx <= q_idx and kv_idx > q_idx - sliding_window;
//      the segment test is the packing the engine's own attention does)
//   head h reads kv head h / (Hq / Hkv)                                   (transformers' repeat_kv)
//   s_j = scale * q_i . k_j;  p = softmax(s) over the allowed j;  o_i = sum_j p_j v_j
// Backward recomputes p (nothing is saved but the inputs and the output):
//   dv_j += p_j do_i;  dp_j = do_i . v_j;  ds_j = p_j (dp_j - do_i . o_i)
//   dq_i = scale * sum_j ds_j k_j;  dk_j += scale * ds_j q_i
// Only the keys inside the window are visited: O(B Hq T W D) work. Accumulation in double, so the kernel
// is exact to fp32 rounding of its inputs; one thread (the example favours clarity over speed; the built-in
// attention is used whenever the window does not bite, see mistral_model.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/cpp/custom_op.hpp"

namespace mistral {

struct SlidingWindowAttrs {
  double scale;    // softmax scale, 1/sqrt(D)
  int64_t window;  // W >= 1
};

class SlidingWindowAttention : public engine::sdk::CustomOp {
 public:
  // inputs: q, k, v, seg
  std::vector<engine::sdk::Tensor> forward(engine::sdk::Host& host,
                                           const std::vector<engine::sdk::Tensor>& in,
                                           const void* attrs) override {
    const Shape s = shape_of(in);
    const auto& a = *static_cast<const SlidingWindowAttrs*>(attrs);
    engine::sdk::Tensor out = host.empty(ENG_F32, {s.B, s.T, s.Hq, s.D});
    const float *q = in[0].data<float>(), *k = in[1].data<float>(), *v = in[2].data<float>();
    const int32_t* seg = in[3].data<int32_t>();
    float* o = out.data<float>();
    std::vector<double> p(static_cast<size_t>(std::min(a.window, s.T))), acc(static_cast<size_t>(s.D));
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.Hq; ++h)
        for (int64_t i = 0; i < s.T; ++i) {
          const int64_t j0 = first_key(a.window, i);
          probabilities(s, q, k, seg, a.scale, b, h, i, j0, p);
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t j = j0; j <= i; ++j) {
            const float* vj = v + s.kv_index(b, j, h);
            for (int64_t d = 0; d < s.D; ++d) acc[size_t(d)] += p[size_t(j - j0)] * vj[d];
          }
          float* oi = o + s.q_index(b, i, h);
          for (int64_t d = 0; d < s.D; ++d) oi[d] = static_cast<float>(acc[size_t(d)]);
        }
    return {out};
  }

  std::vector<engine::sdk::Tensor> backward(engine::sdk::Host& host,
                                            const std::vector<engine::sdk::Tensor>& in,
                                            const std::vector<engine::sdk::Tensor>& out,
                                            const std::vector<engine::sdk::Tensor>& grad_out,
                                            const void* attrs, const std::vector<bool>& needs_grad) override {
    const Shape s = shape_of(in);
    const auto& a = *static_cast<const SlidingWindowAttrs*>(attrs);
    const engine::sdk::Tensor dout = host.contiguous(grad_out[0]);
    const float *q = in[0].data<float>(), *k = in[1].data<float>(), *v = in[2].data<float>();
    const int32_t* seg = in[3].data<int32_t>();
    const float *o = out[0].data<float>(), *go = dout.data<float>();
    std::vector<double> dq(size_t(s.B * s.T * s.Hq * s.D), 0.0), dk(size_t(s.B * s.T * s.Hkv * s.D), 0.0),
        dv(dk.size(), 0.0), p(static_cast<size_t>(std::min(a.window, s.T)));
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.Hq; ++h)
        for (int64_t i = 0; i < s.T; ++i) {
          const int64_t j0 = first_key(a.window, i);
          probabilities(s, q, k, seg, a.scale, b, h, i, j0, p);
          const float *qi = q + s.q_index(b, i, h), *gi = go + s.q_index(b, i, h),
                      *oi = o + s.q_index(b, i, h);
          double go_dot_o = 0.0;
          for (int64_t d = 0; d < s.D; ++d) go_dot_o += double(gi[d]) * oi[d];
          for (int64_t j = j0; j <= i; ++j) {
            const int64_t kj = s.kv_index(b, j, h);
            const double pj = p[size_t(j - j0)];
            double dp = 0.0;
            for (int64_t d = 0; d < s.D; ++d) {
              dp += double(gi[d]) * v[kj + d];
              dv[size_t(kj + d)] += pj * gi[d];
            }
            const double ds = pj * (dp - go_dot_o) * a.scale;
            for (int64_t d = 0; d < s.D; ++d) {
              dq[size_t(s.q_index(b, i, h) + d)] += ds * k[kj + d];
              dk[size_t(kj + d)] += ds * qi[d];
            }
          }
        }
    auto tensor = [&](const std::vector<double>& g, const engine::sdk::Tensor& like) {
      std::vector<float> f(g.begin(), g.end());
      return host.from_vector<float>(like.shape(), f);
    };
    return {needs_grad[0] ? tensor(dq, in[0]) : engine::sdk::Tensor(),
            needs_grad[1] ? tensor(dk, in[1]) : engine::sdk::Tensor(),
            needs_grad[2] ? tensor(dv, in[2]) : engine::sdk::Tensor(), engine::sdk::Tensor()};
  }

 private:
  struct Shape {
    int64_t B, T, Hq, Hkv, D;
    int64_t q_index(int64_t b, int64_t t, int64_t h) const { return ((b * T + t) * Hq + h) * D; }
    int64_t kv_index(int64_t b, int64_t t, int64_t h) const {
      return ((b * T + t) * Hkv + h / (Hq / Hkv)) * D;
    }
  };

  static Shape shape_of(const std::vector<engine::sdk::Tensor>& in) {
    for (size_t i = 0; i < 3; ++i)
      if (in[i].dtype() != ENG_F32 || !in[i].is_contiguous() || !in[i].is_cpu() || in[i].ndim() != 4)
        throw engine::sdk::Error(
            "mistral.sliding_window_attention: q, k and v must be contiguous 4-d f32 CPU tensors",
            ENG_ERR_INVALID_ARGUMENT);
    const Shape s{in[0].dim(0), in[0].dim(1), in[0].dim(2), in[1].dim(2), in[0].dim(3)};
    if (in[1].dim(0) != s.B || in[1].dim(1) != s.T || in[1].dim(3) != s.D || in[2].shape() != in[1].shape() ||
        s.Hq % s.Hkv != 0 || in[3].dtype() != ENG_I32 || in[3].numel() != s.B * s.T || !in[3].is_contiguous())
      throw engine::sdk::Error(
          "mistral.sliding_window_attention: q (B,T,Hq,D), k, v (B,T,Hkv,D) with Hq % Hkv == 0 "
          "and seg (B,T) i32 expected",
          ENG_ERR_INVALID_ARGUMENT);
    return s;
  }

  // The first key of query i's window (keys of other segments inside it get probability 0).
  static int64_t first_key(int64_t window, int64_t i) { return std::max<int64_t>(0, i - window + 1); }

  // p[j - j0] = softmax over the allowed j in [j0, i] of scale * q_i . k_j; 0 for keys of another segment
  static void probabilities(const Shape& s, const float* q, const float* k, const int32_t* seg, double scale,
                            int64_t b, int64_t h, int64_t i, int64_t j0, std::vector<double>& p) {
    const float* qi = q + s.q_index(b, i, h);
    const int32_t own = seg[b * s.T + i];
    double m = -INFINITY;
    for (int64_t j = j0; j <= i; ++j) {
      if (seg[b * s.T + j] != own) continue;
      const float* kj = k + s.kv_index(b, j, h);
      double dot = 0.0;
      for (int64_t d = 0; d < s.D; ++d) dot += double(qi[d]) * kj[d];
      p[size_t(j - j0)] = dot * scale;
      m = std::max(m, p[size_t(j - j0)]);
    }
    double sum = 0.0;  // > 0: query i always sees itself
    for (int64_t j = j0; j <= i; ++j) {
      double& pj = p[size_t(j - j0)];
      pj = seg[b * s.T + j] == own ? std::exp(pj - m) : 0.0;
      sum += pj;
    }
    for (int64_t j = j0; j <= i; ++j) p[size_t(j - j0)] /= sum;
  }
};

}  // namespace mistral
