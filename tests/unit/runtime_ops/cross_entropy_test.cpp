// Cross-entropy and the fused linear + cross-entropy: loss against a direct log-softmax, ignored rows,
// chunking, backward against finite differences in fp64.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/runtime/ops/linear_cross_entropy.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "op_test_support.hpp"

namespace engine::rt {
namespace {

using namespace testing;

double ce_ref(const std::vector<double>& z, const std::vector<int32_t>& labels, int64_t V, double scale) {
  double total = 0;
  for (size_t n = 0; n < labels.size(); ++n) {
    if (labels[n] == -100) continue;
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(z[n * V + v]);
    total += std::log(s) - z[n * V + labels[n]];
  }
  return scale * total;
}

TEST(CrossEntropy, LossIgnoredRowsAndGradient) {
  const int64_t N = 6, V = 9;
  Tensor z = random_tensor({N, V}, ENG_F64, 1, 3.0);
  std::vector<int32_t> lab = {3, -100, 0, 8, -100, 5};
  Tensor l = Tensor::from_vector({N}, ENG_I32, cpu_device(), lab);
  const double scale = 1.0 / 4;
  Tensor loss = ops::make_cross_entropy(-100, scale)->forward({z, l}, false)[0];
  EXPECT_EQ(loss.ndim(), 0);
  EXPECT_NEAR(loss.item(), ce_ref(values(z), lab, V, scale), 1e-13);
  EXPECT_NEAR(ops::make_cross_entropy(-100, scale)->forward({z.to(ENG_F32), l}, false)[0].item(),
              ce_ref(values(z), lab, V, scale), 1e-5);
  expect_gradients_match([scale] { return ops::make_cross_entropy(-100, scale); }, {z, l}, {true, false});
  // Ignored rows get exactly zero gradient.
  auto node = ops::make_cross_entropy(-100, scale);
  node->forward({z, l}, true);
  const auto g = values(node->backward({Tensor::full(Dims{}, ENG_F64, cpu_device(), 1.0)}, {true, false})[0]);
  for (int64_t v = 0; v < V; ++v) EXPECT_EQ(g[1 * V + v], 0.0);
  // Stable for logits far beyond exp's range.
  std::vector<float> big(static_cast<size_t>(N * V));
  for (size_t i = 0; i < big.size(); ++i) big[i] = 1000.0f + static_cast<float>(values(z)[i]);
  const double lb = ops::make_cross_entropy(-100, scale)
                        ->forward({Tensor::from_vector({N, V}, ENG_F32, cpu_device(), big), l}, false)[0]
                        .item();
  EXPECT_NEAR(lb, ce_ref(values(z), lab, V, scale), 1e-3);
  Tensor bad = Tensor::from_vector({N}, ENG_I32, cpu_device(), std::vector<int32_t>{0, 1, 2, 9, 0, 0});
  EXPECT_THROW(ops::make_cross_entropy(-100, 1.0)->forward({z, bad}, false), Error);
}

TEST(CrossEntropy, AllRowsIgnoredGiveZero) {
  Tensor z = random_tensor({3, 4}, ENG_F64, 2);
  Tensor l = Tensor::from_vector({3}, ENG_I32, cpu_device(), std::vector<int32_t>{-100, -100, -100});
  auto node = ops::make_cross_entropy(-100, 1.0);
  EXPECT_EQ(node->forward({z, l}, true)[0].item(), 0.0);
  for (double g :
       values(node->backward({Tensor::full(Dims{}, ENG_F64, cpu_device(), 1.0)}, {true, false})[0]))
    EXPECT_EQ(g, 0.0);
  auto fused = ops::make_linear_cross_entropy(-100, 1.0);
  Tensor h = random_tensor({3, 5}, ENG_F64, 3), w = random_tensor({4, 5}, ENG_F64, 4);
  EXPECT_EQ(fused->forward({h, w, l}, true)[0].item(), 0.0);
  const auto grads = fused->backward({Tensor::full(Dims{}, ENG_F64, cpu_device(), 1.0)}, {true, true, false});
  for (double g : values(grads[0])) EXPECT_EQ(g, 0.0);
  for (double g : values(grads[1])) EXPECT_EQ(g, 0.0);
}

TEST(LinearCrossEntropy, MatchesUnfusedAcrossChunkSizes) {
  const int64_t N = 7, C = 5, V = 11;
  Tensor h = random_tensor({N, C}, ENG_F64, 5, 2.0), w = random_tensor({V, C}, ENG_F64, 6);
  // rows 0..2 all ignored: with 3-row chunks the first chunk is skipped entirely
  std::vector<int32_t> lab = {-100, -100, -100, 4, 10, -100, 0};
  Tensor l = Tensor::from_vector({N}, ENG_I32, cpu_device(), lab);
  const double scale = 0.3;
  Tensor logits = ops::make_linear()->forward({h, w, Tensor()}, false)[0];
  const double ref = ce_ref(values(logits), lab, V, scale);
  for (int64_t chunk : {0, 1, 3, 100}) {
    SCOPED_TRACE(chunk);
    EXPECT_NEAR(
        ops::make_linear_cross_entropy_chunked(-100, scale, chunk)->forward({h, w, l}, false)[0].item(), ref,
        1e-13);
    expect_gradients_match([=] { return ops::make_linear_cross_entropy_chunked(-100, scale, chunk); },
                           {h, w, l}, {true, true, false});
  }
  EXPECT_NEAR(ops::make_linear_cross_entropy(-100, scale)
                  ->forward({h.to(ENG_F32), w.to(ENG_F32), l}, false)[0]
                  .item(),
              ref, 1e-5);
}

}  // namespace
}  // namespace engine::rt
