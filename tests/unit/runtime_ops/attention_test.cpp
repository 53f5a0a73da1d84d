// Attention: forward against a materialised-softmax reference (causal, grouped-query, segment mask), backward
// against finite differences in fp64, f32 against f64, and generation through the KV cache against the full
// op.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/runtime/kv_cache.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "op_test_support.hpp"

namespace engine::rt {
namespace {

using namespace testing;

// out (B, T, Hq, D) by the definition: scores over visible keys, softmax, weighted sum of v.
std::vector<double> attention_ref(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const std::vector<int32_t>* seg, double scale) {
  const auto qv = values(q), kv = values(k), vv = values(v);
  const int64_t B = q.dim(0), T = q.dim(1), Hq = q.dim(2), D = q.dim(3), Hkv = k.dim(2), G = Hq / Hkv;
  std::vector<double> out(qv.size(), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> s(static_cast<size_t>(T), -std::numeric_limits<double>::infinity());
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= i; ++j) {
          if (seg && (*seg)[b * T + j] != (*seg)[b * T + i]) continue;
          double d = 0;
          for (int64_t e = 0; e < D; ++e)
            d += qv[((b * T + i) * Hq + h) * D + e] * kv[((b * T + j) * Hkv + h / G) * D + e];
          s[j] = scale * d;
          m = std::max(m, s[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < T; ++j) z += std::isinf(s[j]) ? 0.0 : std::exp(s[j] - m);
        for (int64_t j = 0; j < T; ++j) {
          if (std::isinf(s[j])) continue;
          const double p = std::exp(s[j] - m) / z;
          for (int64_t e = 0; e < D; ++e)
            out[((b * T + i) * Hq + h) * D + e] += p * vv[((b * T + j) * Hkv + h / G) * D + e];
        }
      }
  return out;
}

TEST(Attention, GroupedQueryWithSegmentsMatchesReference) {
  const int64_t B = 2, T = 7, Hq = 3, Hkv = 1, D = 5;
  const double scale = 1.0 / std::sqrt(double(D));
  Tensor q = random_tensor({B, T, Hq, D}, ENG_F64, 1, 2.0),
         k = random_tensor({B, T, Hkv, D}, ENG_F64, 2, 2.0), v = random_tensor({B, T, Hkv, D}, ENG_F64, 3);
  // row 0: three documents; row 1: one document followed by padding (segment -1 attends only to padding)
  std::vector<int32_t> seg = {0, 0, 0, 1, 1, 2, 2, 4, 4, 4, 4, 4, -1, -1};
  Tensor s = Tensor::from_vector({B, T}, ENG_I32, cpu_device(), seg);
  const auto y = values(ops::make_attention(scale)->forward({q, k, v, s}, false)[0]);
  expect_close(y, attention_ref(q, k, v, &seg, scale), 1e-12, 1e-13, "attention with segments");
  const auto y0 = values(ops::make_attention(scale)->forward({q, k, v, Tensor()}, false)[0]);
  expect_close(y0, attention_ref(q, k, v, nullptr, scale), 1e-12, 1e-13, "attention without segments");
  const auto yf =
      values(ops::make_attention(scale)->forward({q.to(ENG_F32), k.to(ENG_F32), v.to(ENG_F32), s}, false)[0]);
  expect_close(yf, y, 1e-5, 1e-5, "attention f32 vs f64");
}

TEST(Attention, GradientsWithSegmentsAndGroupedHeads) {
  const int64_t B = 2, T = 7, D = 5;
  std::vector<int32_t> seg = {0, 0, 0, 1, 1, 2, 2, 4, 4, 4, 4, 4, -1, -1};
  Tensor s = Tensor::from_vector({B, T}, ENG_I32, cpu_device(), seg);
  {
    Tensor q = random_tensor({B, T, 3, D}, ENG_F64, 4), k = random_tensor({B, T, 1, D}, ENG_F64, 5),
           v = random_tensor({B, T, 1, D}, ENG_F64, 6);
    expect_gradients_match([] { return ops::make_attention(0.7); }, {q, k, v, s}, {true, true, true, false});
  }
  {
    Tensor q = random_tensor({1, 6, 4, 3}, ENG_F64, 7), k = random_tensor({1, 6, 2, 3}, ENG_F64, 8),
           v = random_tensor({1, 6, 2, 3}, ENG_F64, 9);
    expect_gradients_match([] { return ops::make_attention(0.5); }, {q, k, v, Tensor()},
                           {true, true, true, false});
  }
}

// B * Hkv >= 8 takes the per-kv-head backward, fewer the split (rows / key blocks) one; with T > 32 the split
// form spans several key blocks. Both against finite differences.
TEST(Attention, GradientsOfBothBackwardForms) {
  std::vector<int32_t> seg(2 * 9);
  for (size_t i = 0; i < seg.size(); ++i) seg[i] = static_cast<int32_t>((i % 9) / 4);  // documents of 4, 4, 1
  Tensor s = Tensor::from_vector({2, 9}, ENG_I32, cpu_device(), seg);
  Tensor q = random_tensor({2, 9, 8, 3}, ENG_F64, 20), k = random_tensor({2, 9, 4, 3}, ENG_F64, 21),
         v = random_tensor({2, 9, 4, 3}, ENG_F64, 22);
  expect_gradients_match([] { return ops::make_attention(0.6); }, {q, k, v, s}, {true, true, true, false});
  Tensor q2 = random_tensor({1, 70, 2, 2}, ENG_F64, 23), k2 = random_tensor({1, 70, 1, 2}, ENG_F64, 24),
         v2 = random_tensor({1, 70, 1, 2}, ENG_F64, 25);
  std::vector<int32_t> seg2(70);
  for (size_t i = 0; i < seg2.size(); ++i) seg2[i] = i < 40 ? 0 : 1;  // a document crossing a key block
  Tensor s2 = Tensor::from_vector({1, 70}, ENG_I32, cpu_device(), seg2);
  expect_gradients_match([] { return ops::make_attention(0.8); }, {q2, k2, v2, s2},
                         {true, true, true, false});
  // The two forms agree with each other in f32 on one problem: run it as B*Hkv = 8 and as 8 separate B*Hkv =
  // 1 problems (one head each).
  const int64_t T = 40, D = 6;
  Tensor qa = random_tensor({8, T, 1, D}, ENG_F32, 26), ka = random_tensor({8, T, 1, D}, ENG_F32, 27),
         va = random_tensor({8, T, 1, D}, ENG_F32, 28), go = random_tensor({8, T, 1, D}, ENG_F32, 29);
  auto whole = ops::make_attention(0.4);
  whole->forward({qa, ka, va, Tensor()}, true);
  const auto gw = whole->backward({go}, {true, true, true, false});
  for (int64_t b = 0; b < 8; ++b) {
    auto one = ops::make_attention(0.4);
    one->forward({qa.sliced(0, b, b + 1), ka.sliced(0, b, b + 1), va.sliced(0, b, b + 1), Tensor()}, true);
    const auto g1 = one->backward({go.sliced(0, b, b + 1)}, {true, true, true, false});
    for (int x = 0; x < 3; ++x)
      expect_close(values(g1[x]), values(gw[x].sliced(0, b, b + 1)), 1e-5, 1e-6,
                   "split vs per-head backward");
  }
}

// The replay memo (train.keep_attention): a memoized forward keeps its output and statistics, and the replay's
// forward takes them instead of running the kernel again (here its q is changed to tell the two apart: the
// output is the memoized one), with the same backward as an unmemoized node's.
TEST(Attention, MemoizedForwardIsWhatTheReplayTakes) {
  const int64_t B = 2, T = 9, Hq = 4, Hkv = 2, D = 6;
  Tensor q = random_tensor({B, T, Hq, D}, ENG_F32, 41), k = random_tensor({B, T, Hkv, D}, ENG_F32, 42),
         v = random_tensor({B, T, Hkv, D}, ENG_F32, 43), go = random_tensor({B, T, Hq, D}, ENG_F32, 44);
  auto plain = ops::make_attention(0.5);
  const auto y = values(plain->forward({q, k, v, Tensor()}, true)[0]);
  const auto g = plain->backward({go}, {true, true, true, false});

  auto memo = ops::make_attention(0.5);
  EXPECT_TRUE(memo->memoize());
  EXPECT_EQ(values(memo->forward({q, k, v, Tensor()}, false)[0]), y);
  ASSERT_EQ(memo->memo().size(), 2u);
  EXPECT_TRUE(memo->memo()[0].defined() && memo->memo()[1].defined());
  EXPECT_EQ(values(memo->forward({q, k, v, Tensor()}, true)[0]), y);  // the replay
  const auto gm = memo->backward({go}, {true, true, true, false});
  for (int x = 0; x < 3; ++x) EXPECT_EQ(values(gm[x]), values(g[x])) << "input " << x;

  auto changed = ops::make_attention(0.5);
  changed->memoize();
  changed->forward({q, k, v, Tensor()}, false);
  Tensor q2 = random_tensor({B, T, Hq, D}, ENG_F32, 45);
  EXPECT_EQ(values(changed->forward({q2, k, v, Tensor()}, true)[0]), y) << "the replay ran the kernel again";
  EXPECT_FALSE(changed->memo()[0].defined()) << "the replay should have taken the memo";
  // A memo of another shape is refused by name.
  auto other = ops::make_attention(0.5);
  other->memoize();
  other->forward({q, k, v, Tensor()}, false);
  Tensor q3 = random_tensor({B, T, 2 * Hq, D}, ENG_F32, 46);
  EXPECT_THROW(other->forward({q3, k, v, Tensor()}, true), Error);
}

TEST(Attention, RejectsHeadsThatDoNotGroup) {
  Tensor q = random_tensor({1, 4, 3, 4}, ENG_F32, 1), k = random_tensor({1, 4, 2, 4}, ENG_F32, 2);
  EXPECT_THROW(ops::make_attention(1.0)->forward({q, k, k, Tensor()}, false), Error);
}

TEST(Attention, CachedGenerationMatchesFullAttention) {
  const int64_t B = 2, T = 6, Hq = 4, Hkv = 2, D = 6;
  const double scale = 0.4;
  Tensor q = random_tensor({B, T, Hq, D}, ENG_F32, 10), k = random_tensor({B, T, Hkv, D}, ENG_F32, 11),
         v = random_tensor({B, T, Hkv, D}, ENG_F32, 12);
  const auto full = values(ops::make_attention(scale)->forward({q, k, v, Tensor()}, false)[0]);
  KvCache cache(2, B, 8, Hkv, D, ENG_F32, cpu_device());
  std::vector<double> got(full.size());
  // prefill 4 tokens, then one at a time; layer 1 of the cache is used, layer 0 stays empty
  for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, 4}, {4, 5}, {5, 6}}) {
    Tensor out = ops::attention_with_cache(q.sliced(1, t0, t1), k.sliced(1, t0, t1), v.sliced(1, t0, t1),
                                           scale, cache, 1);
    cache.advance(t1 - t0);
    const auto ov = values(out);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t e = 0; e < Hq * D; ++e)
          got[(b * T + t) * Hq * D + e] = ov[(b * (t1 - t0) + (t - t0)) * Hq * D + e];
  }
  expect_close(got, full, 1e-6, 1e-6, "cached attention");
  EXPECT_EQ(cache.length, 6);
  EXPECT_THROW(
      ops::attention_with_cache(q.sliced(1, 0, 3), k.sliced(1, 0, 3), v.sliced(1, 0, 3), scale, cache, 1),
      Error);  // 6 + 3 > max_len 8
  EXPECT_THROW(cache.advance(3), Error);
}

}  // namespace
}  // namespace engine::rt
