// Pointwise and row-wise ops: add, mul, scale, silu, swiglu, softmax, dropout, sum, cast, and the in-place
// updates. Forward against plain loops; backward against finite differences in fp64; f32 against f64.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "engine/runtime/ops/ops.hpp"
#include "kernels/cpu/dropout.hpp"
#include "op_test_support.hpp"

namespace engine::rt {
namespace {

using namespace testing;

std::vector<double> run1(Node& n, const std::vector<Tensor>& in) { return values(n.forward(in, false)[0]); }

TEST(AddMul, BroadcastForwardMatchesLoops) {
  Tensor a = random_tensor({3, 5, 7}, ENG_F64, 1), b = random_tensor({5, 7}, ENG_F64, 2);
  const auto av = values(a), bv = values(b);
  const auto add = run1(*ops::make_add(), {a, b});
  const auto mul = run1(*ops::make_mul(), {a, b});
  for (size_t i = 0; i < av.size(); ++i) {
    EXPECT_DOUBLE_EQ(add[i], av[i] + bv[i % 35]);
    EXPECT_DOUBLE_EQ(mul[i], av[i] * bv[i % 35]);
  }
}

TEST(AddMul, GradientsIncludingBroadcastReduction) {
  Tensor a = random_tensor({3, 5, 7}, ENG_F64, 3), b = random_tensor({5, 7}, ENG_F64, 4);
  expect_gradients_match([] { return ops::make_add(); }, {a, b}, {true, true});
  expect_gradients_match([] { return ops::make_mul(); }, {a, b}, {true, true});
  Tensor c = random_tensor({3, 5, 7}, ENG_F64, 5);  // same shape, no broadcast
  expect_gradients_match([] { return ops::make_mul(); }, {a, c}, {true, true});
  expect_gradients_match([] { return ops::make_add(); }, {a, c}, {true, true});
}

TEST(AddMul, RejectsShapesThatAreNotTrailing) {
  Tensor a = random_tensor({3, 5}, ENG_F32, 1), b = random_tensor({3}, ENG_F32, 2);
  EXPECT_THROW(ops::make_add()->forward({a, b}, false), Error);
}

TEST(Scale, ForwardAndGradient) {
  Tensor x = random_tensor({4, 3}, ENG_F64, 6);
  const auto y = run1(*ops::make_scale(-2.5), {x});
  const auto xv = values(x);
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_DOUBLE_EQ(y[i], -2.5 * xv[i]);
  expect_gradients_match([] { return ops::make_scale(-2.5); }, {x}, {true});
}

TEST(Silu, ForwardGradientAndF32) {
  Tensor x = random_tensor({5, 9}, ENG_F64, 7, 4.0);
  const auto y = run1(*ops::make_silu(), {x});
  const auto xv = values(x);
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_NEAR(y[i], xv[i] / (1 + std::exp(-xv[i])), 1e-15);
  expect_gradients_match([] { return ops::make_silu(); }, {x}, {true});
  expect_close(run1(*ops::make_silu(), {x.to(ENG_F32)}), y, 1e-6, 1e-6, "silu f32 vs f64");
}

TEST(Swiglu, ForwardGradientAndF32) {
  Tensor g = random_tensor({3, 11}, ENG_F64, 8, 3.0), u = random_tensor({3, 11}, ENG_F64, 9);
  const auto y = run1(*ops::make_swiglu(), {g, u});
  const auto gv = values(g), uv = values(u);
  for (size_t i = 0; i < gv.size(); ++i) EXPECT_NEAR(y[i], gv[i] / (1 + std::exp(-gv[i])) * uv[i], 1e-15);
  expect_gradients_match([] { return ops::make_swiglu(); }, {g, u}, {true, true});
  expect_close(run1(*ops::make_swiglu(), {g.to(ENG_F32), u.to(ENG_F32)}), y, 1e-6, 1e-6, "swiglu f32 vs f64");
}

// The backward writes the gradients over the saved gate and up only when the node is their sole holder; the
// gradients are the same values either way.
TEST(Swiglu, BackwardInPlaceOnlyWhenTheNodeSolelyHoldsGateAndUp) {
  const Tensor g0 = random_tensor({4, 16}, ENG_F32, 18, 3.0), u0 = random_tensor({4, 16}, ENG_F32, 19);
  const Tensor dy = random_tensor({4, 16}, ENG_F32, 20);
  auto run = [&](bool keep_inputs) {
    Tensor g = g0.contiguous().to(ENG_F64).to(ENG_F32), u = u0.contiguous().to(ENG_F64).to(ENG_F32);  // fresh
    auto node = ops::make_swiglu();
    node->forward({g, u}, /*save=*/true);
    if (!keep_inputs) g = u = Tensor();
    const int64_t before = ops::swiglu_in_place_backwards();
    const auto grads = node->backward({dy}, {true, true});
    const bool in_place = ops::swiglu_in_place_backwards() == before + 1;
    if (keep_inputs) {  // the caller's gate and up are untouched
      EXPECT_EQ(values(g), values(g0));
      EXPECT_EQ(values(u), values(u0));
    }
    return std::make_tuple(in_place, values(grads[0]), values(grads[1]));
  };
  const auto [kept_in_place, kept_dg, kept_du] = run(true);
  const auto [sole_in_place, sole_dg, sole_du] = run(false);
  EXPECT_FALSE(kept_in_place);
  EXPECT_TRUE(sole_in_place);
  EXPECT_EQ(kept_dg, sole_dg);
  EXPECT_EQ(kept_du, sole_du);
}

TEST(Softmax, ForwardGradientAndLargeLogits) {
  Tensor x = random_tensor({4, 13}, ENG_F64, 10, 5.0);
  const auto y = run1(*ops::make_softmax(), {x});
  const auto xv = values(x);
  for (int r = 0; r < 4; ++r) {
    double s = 0;
    for (int c = 0; c < 13; ++c) s += std::exp(xv[r * 13 + c]);
    for (int c = 0; c < 13; ++c) EXPECT_NEAR(y[r * 13 + c], std::exp(xv[r * 13 + c]) / s, 1e-15);
  }
  expect_gradients_match([] { return ops::make_softmax(); }, {x}, {true});
  // Logits of 1000: a naive exp overflows; max subtraction keeps the result finite and equal to the shifted
  // one.
  std::vector<double> shifted = values(x);
  for (double& v : shifted) v += 1000.0;
  const auto yb =
      run1(*ops::make_softmax(), {Tensor::from_vector({4, 13}, ENG_F32, cpu_device(),
                                                      std::vector<float>(shifted.begin(), shifted.end()))});
  expect_close(yb, y, 1e-3, 1e-5, "softmax of shifted f32 logits");
}

TEST(Dropout, MaskIsSeededScaledAndReplayed) {
  const double p = 0.3;
  Tensor x = random_tensor({64, 33}, ENG_F64, 11);
  auto node = ops::make_dropout(p, 1234);
  const auto y1 = run1(*node, {x});
  const auto y2 = run1(*ops::make_dropout(p, 1234), {x});  // a replay: same seed, same mask
  const auto y3 = run1(*ops::make_dropout(p, 99), {x});
  const auto xv = values(x);
  int dropped = 0, differs = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    const bool keep = cpu::dropout_keep(1234, i, p);
    EXPECT_DOUBLE_EQ(y1[i], keep ? xv[i] / (1 - p) : 0.0);
    dropped += !keep;
    differs += (y3[i] == 0.0) != (y1[i] == 0.0);
  }
  EXPECT_EQ(y1, y2);
  EXPECT_GT(differs, 100);                            // another seed, another mask
  EXPECT_NEAR(dropped / double(xv.size()), p, 0.04);  // 2112 draws: p within 4 sigma-ish
  expect_gradients_match([p] { return ops::make_dropout(p, 1234); }, {random_tensor({5, 7}, ENG_F64, 12)},
                         {true});
}

TEST(Sum, ForwardGradientAndF32) {
  Tensor x = random_tensor({7, 300}, ENG_F64, 13);
  double ref = 0;
  for (double v : values(x)) ref += v;
  Tensor y = ops::make_sum()->forward({x}, false)[0];
  EXPECT_EQ(y.ndim(), 0);
  EXPECT_NEAR(y.item(), ref, 1e-12);
  EXPECT_NEAR(ops::make_sum()->forward({x.to(ENG_F32)}, false)[0].item(), ref, 1e-4);
  EXPECT_EQ(ops::make_sum()->forward({x.to(ENG_F32)}, false)[0].dtype(), ENG_F32);
  expect_gradients_match([] { return ops::make_sum(); }, {random_tensor({3, 4}, ENG_F64, 14)}, {true});
}

TEST(Cast, ConvertsAndGradientComesBackInInputDtype) {
  Tensor x = random_tensor({6, 5}, ENG_F32, 15);
  Tensor b = ops::make_cast(ENG_BF16)->forward({x}, false)[0];
  EXPECT_EQ(b.dtype(), ENG_BF16);
  expect_close(values(b), values(x), 1.0 / 128, 0, "bf16 cast");
  auto node = ops::make_cast(ENG_F64);
  Tensor d = node->forward({x}, true)[0];
  EXPECT_EQ(d.dtype(), ENG_F64);
  EXPECT_EQ(values(d), values(x));
  Tensor g = node->backward({random_tensor({6, 5}, ENG_F64, 16)}, {true})[0];
  EXPECT_EQ(g.dtype(), ENG_F32);
  // bf16 inputs of a compute op come out as f32
  Tensor s = ops::make_silu()->forward({b}, false)[0];
  EXPECT_EQ(s.dtype(), ENG_F32);
  expect_gradients_match([] { return ops::make_cast(ENG_F64); }, {random_tensor({3, 3}, ENG_F64, 17)},
                         {true});
}

TEST(InPlace, AxpbyCopyFill) {
  Tensor dst = random_tensor({5, 7}, ENG_F32, 18), src = random_tensor({5, 7}, ENG_F32, 19);
  const auto d0 = values(dst), s0 = values(src);
  ops::axpby_(dst, 0.9, src, -0.1);
  const auto d1 = values(dst);
  for (size_t i = 0; i < d0.size(); ++i) EXPECT_NEAR(d1[i], 0.9 * d0[i] - 0.1 * s0[i], 1e-6);
  ops::copy_(dst, src.transposed(0, 1).contiguous().transposed(0, 1));  // strided source
  EXPECT_EQ(values(dst), s0);
  Tensor bf = Tensor::empty({5, 7}, ENG_BF16, cpu_device());
  ops::copy_(bf, src);
  expect_close(values(bf), s0, 1.0 / 128, 0, "copy_ into bf16");
  ops::fill_(dst, 0.25);
  for (double v : values(dst)) EXPECT_EQ(v, 0.25);
  ops::fill_(bf, -2.0);
  for (double v : values(bf)) EXPECT_EQ(v, -2.0);
  Tensor bad = random_tensor({7, 5}, ENG_F32, 20);
  EXPECT_THROW(ops::axpby_(dst, 1, bad, 1), Error);
}

}  // namespace
}  // namespace engine::rt
