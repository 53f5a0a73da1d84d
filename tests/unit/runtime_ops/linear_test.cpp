// Linear, matmul and embedding: forward against plain loops, backward against finite differences in fp64.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "engine/core/error.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "op_test_support.hpp"

namespace engine::rt {
namespace {

using namespace testing;

TEST(Linear, ForwardMatchesLoopsWithAndWithoutBias) {
  const int64_t B = 2, T = 3, in = 5, out = 7;
  Tensor x = random_tensor({B, T, in}, ENG_F64, 1), w = random_tensor({out, in}, ENG_F64, 2),
         b = random_tensor({out}, ENG_F64, 3);
  const auto xv = values(x), wv = values(w), bv = values(b);
  const auto y = values(ops::make_linear()->forward({x, w, b}, false)[0]);
  const auto y0 = values(ops::make_linear()->forward({x, w, Tensor()}, false)[0]);
  for (int64_t n = 0; n < B * T; ++n)
    for (int64_t o = 0; o < out; ++o) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) s += xv[n * in + i] * wv[o * in + i];
      EXPECT_NEAR(y0[n * out + o], s, 1e-14);
      EXPECT_NEAR(y[n * out + o], s + bv[o], 1e-14);
    }
  const auto yf =
      values(ops::make_linear()->forward({x.to(ENG_F32), w.to(ENG_F32), b.to(ENG_F32)}, false)[0]);
  expect_close(yf, y, 1e-5, 1e-5, "linear f32 vs f64");
}

TEST(Linear, Gradients) {
  Tensor x = random_tensor({2, 3, 5}, ENG_F64, 4), w = random_tensor({7, 5}, ENG_F64, 5),
         b = random_tensor({7}, ENG_F64, 6);
  expect_gradients_match([] { return ops::make_linear(); }, {x, w, b}, {true, true, true});
  expect_gradients_match([] { return ops::make_linear(); }, {x, w, Tensor()}, {true, true, false});
}

// A frozen weight (LoRA's and QLoRA's base) needs no input for backward: the node must not hold x, so that x
// goes with its last other holder (on an H200 at 8,192 tokens, down_proj's input gradient was allocated while
// the node still held SwiGLU's output, I elements a token over the step's peak).
TEST(Linear, FrozenWeightKeepsNotItsInput) {
  Tensor x = random_tensor({2, 3, 5}, ENG_F64, 7), w = random_tensor({4, 5}, ENG_F64, 8);
  Tensor dy = random_tensor({2, 3, 4}, ENG_F64, 9);
  auto full = ops::make_linear();
  full->forward({x, w}, true);
  const auto dx_full = values(full->backward({dy}, {true, true})[0]);
  full->release_saved();

  auto frozen = ops::make_linear();
  frozen->set_input_needs_grad({true, false});
  std::weak_ptr<Storage> xs = x.impl()->storage;
  frozen->forward({x, w}, true);
  x = Tensor();
  EXPECT_TRUE(xs.expired()) << "linear kept its input for a weight that needs no gradient";
  const std::vector<Tensor> g = frozen->backward({dy}, {true, false});
  EXPECT_FALSE(g[1].defined());
  EXPECT_EQ(values(g[0]), dx_full);

  auto told = ops::make_linear();
  told->set_input_needs_grad({true, false});
  told->forward({random_tensor({3, 5}, ENG_F64, 10), w}, true);
  try {
    told->backward({random_tensor({3, 4}, ENG_F64, 11)}, {true, true});
    ADD_FAILURE() << "a weight gradient was computed without the saved input";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("told the weight needs none"), std::string::npos) << e.what();
  }
}

// Reference: (batch, M, N) = op(a) op(b), b optionally without batch dims.
std::vector<double> matmul_ref(const Tensor& a, const Tensor& b, bool ta, bool tb, int64_t batch, int64_t M,
                               int64_t N, int64_t K, bool bcast) {
  const auto av = values(a), bv = values(b);
  std::vector<double> y(static_cast<size_t>(batch * M * N));
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double x = ta ? av[p * M * K + k * M + i] : av[p * M * K + i * K + k];
          const int64_t bo = bcast ? 0 : p * K * N;
          const double z = tb ? bv[bo + j * K + k] : bv[bo + k * N + j];
          s += x * z;
        }
        y[p * M * N + i * N + j] = s;
      }
  return y;
}

TEST(Matmul, AllTransposesBatchedAndBroadcast) {
  const int64_t batch = 3, M = 4, N = 5, K = 6;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int bc = 0; bc < 2; ++bc) {
        SCOPED_TRACE(::testing::Message() << "trans_a " << ta << " trans_b " << tb << " broadcast " << bc);
        Tensor a = random_tensor(ta ? Dims{batch, K, M} : Dims{batch, M, K}, ENG_F64, 10 + ta);
        Dims bs = tb ? Dims{N, K} : Dims{K, N};
        if (!bc) bs = tb ? Dims{batch, N, K} : Dims{batch, K, N};
        Tensor b = random_tensor(bs, ENG_F64, 20 + tb);
        Tensor y = ops::make_matmul(ta, tb)->forward({a, b}, false)[0];
        EXPECT_EQ(y.shape(), (Dims{batch, M, N}));
        expect_close(values(y), matmul_ref(a, b, ta, tb, batch, M, N, K, bc), 1e-13, 1e-13, "matmul");
        expect_gradients_match([=] { return ops::make_matmul(ta, tb); }, {a, b}, {true, true});
      }
}

TEST(Matmul, RejectsMismatchedInnerDims) {
  EXPECT_THROW(ops::make_matmul(false, false)
                   ->forward({random_tensor({2, 3}, ENG_F32, 1), random_tensor({4, 5}, ENG_F32, 2)}, false),
               Error);
}

TEST(Embedding, ForwardGradientWithRepeatedIds) {
  const int64_t V = 11, C = 6;
  Tensor table = random_tensor({V, C}, ENG_F64, 30);
  std::vector<int32_t> id_values = {3, 0, 10, 3, 3, 7, 0, 9};  // repeats: the backward must add them up
  Tensor ids = Tensor::from_vector({2, 4}, ENG_I32, cpu_device(), id_values);
  Tensor y = ops::make_embedding()->forward({table, ids}, false)[0];
  EXPECT_EQ(y.shape(), (Dims{2, 4, C}));
  const auto tv = values(table), yv = values(y);
  for (size_t n = 0; n < id_values.size(); ++n)
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(yv[n * C + c], tv[id_values[n] * C + c]);
  expect_gradients_match([] { return ops::make_embedding(); }, {table, ids}, {true, false});
  expect_gradients_match([] { return ops::make_embedding(); }, {table, ids.to(ENG_I64)}, {true, false});
  Tensor bad = Tensor::from_vector({1}, ENG_I32, cpu_device(), std::vector<int32_t>{11});
  EXPECT_THROW(ops::make_embedding()->forward({table, bad}, false), Error);
}

}  // namespace
}  // namespace engine::rt

namespace engine::rt {
namespace {

using namespace testing;

// bf16 storage (frozen base weights): outputs and gradients in f32, equal to the f32 computation on the
// bf16-rounded values; the node keeps the bf16 tensor, not an f32 copy, for backward.
TEST(Bf16Inputs, LinearEmbeddingAndNormComputeInF32) {
  Tensor x = random_tensor({3, 8}, ENG_F32, 40), w16 = random_tensor({5, 8}, ENG_BF16, 41);
  Tensor w32 = w16.to(ENG_F32);
  auto a = ops::make_linear(), b = ops::make_linear();
  Tensor ya = a->forward({x, w16, Tensor()}, true)[0], yb = b->forward({x, w32, Tensor()}, true)[0];
  EXPECT_EQ(ya.dtype(), ENG_F32);
  EXPECT_TRUE(bitwise_equal(ya, yb));
  Tensor g = random_tensor({3, 5}, ENG_F32, 42);
  const auto ga = a->backward({g}, {true, false, false}), gb = b->backward({g}, {true, false, false});
  EXPECT_TRUE(bitwise_equal(ga[0], gb[0]));
  EXPECT_EQ(ga[0].dtype(), ENG_F32);
  Tensor ids = Tensor::from_vector({4}, ENG_I32, cpu_device(), std::vector<int32_t>{4, 0, 4, 2});
  Tensor e16 = ops::make_embedding()->forward({w16, ids}, false)[0];
  EXPECT_EQ(e16.dtype(), ENG_F32);
  EXPECT_TRUE(bitwise_equal(e16, ops::make_embedding()->forward({w32, ids}, false)[0]));
  Tensor n16 = ops::make_rms_norm(1e-6)->forward({x, random_tensor({8}, ENG_BF16, 43)}, false)[0];
  EXPECT_EQ(n16.dtype(), ENG_F32);
  EXPECT_THROW(ops::make_linear()->forward({x.to(ENG_F64), w16, Tensor()}, false),
               Error);  // f64 mixed with bf16
}

}  // namespace
}  // namespace engine::rt
