// Shape ops: reshape, transpose, slice, concat, contiguous. Forward against index arithmetic, backward
// against finite differences in fp64.
#include <gtest/gtest.h>

#include "engine/runtime/ops/ops.hpp"
#include "op_test_support.hpp"

namespace engine::rt {
namespace {

using namespace testing;

TEST(Shape, ReshapeInfersAndCopiesNonContiguous) {
  Tensor x = random_tensor({2, 3, 4}, ENG_F64, 1);
  const int64_t shape[] = {4, -1};
  Tensor y = ops::make_reshape(2, shape)->forward({x}, false)[0];
  EXPECT_EQ(y.shape(), (Dims{4, 6}));
  EXPECT_EQ(values(y), values(x));
  Tensor xt = x.transposed(0, 2);  // (4, 3, 2) non-contiguous
  Tensor yt = ops::make_reshape(2, shape)->forward({xt}, false)[0];
  EXPECT_EQ(values(yt), values(xt.contiguous()));
  expect_gradients_match([&] { return ops::make_reshape(2, shape); }, {x}, {true});
}

TEST(Shape, TransposeSliceContiguous) {
  Tensor x = random_tensor({3, 4, 5}, ENG_F64, 2);
  const auto xv = values(x);
  const auto t = values(ops::make_transpose(0, 2)->forward({x}, false)[0]);  // (5, 4, 3)
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 4; ++b)
      for (int c = 0; c < 5; ++c) EXPECT_EQ(t[(c * 4 + b) * 3 + a], xv[(a * 4 + b) * 5 + c]);
  Tensor s = ops::make_slice(1, 1, 3)->forward({x}, false)[0];  // (3, 2, 5)
  EXPECT_EQ(s.shape(), (Dims{3, 2, 5}));
  const auto sv = values(s);
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 2; ++b)
      for (int c = 0; c < 5; ++c) EXPECT_EQ(sv[(a * 2 + b) * 5 + c], xv[(a * 4 + b + 1) * 5 + c]);
  Tensor cont = ops::make_contiguous()->forward({x.transposed(1, 2)}, false)[0];
  EXPECT_TRUE(cont.is_contiguous());
  EXPECT_EQ(values(cont), values(x.transposed(1, 2)));
  expect_gradients_match([] { return ops::make_transpose(0, 2); }, {x}, {true});
  expect_gradients_match([] { return ops::make_slice(1, 1, 3); }, {x}, {true});
  expect_gradients_match([] { return ops::make_slice(-1, 0, 4); }, {x}, {true});
  expect_gradients_match([] { return ops::make_contiguous(); }, {x}, {true});
  EXPECT_THROW(ops::make_slice(1, 2, 9)->forward({x}, false), Error);
}

TEST(Shape, ConcatAlongMiddleDim) {
  Tensor a = random_tensor({2, 3, 4}, ENG_F64, 3), b = random_tensor({2, 1, 4}, ENG_F64, 4),
         c = random_tensor({2, 2, 4}, ENG_F64, 5);
  Tensor y = ops::make_concat(1)->forward({a, b, c}, false)[0];
  EXPECT_EQ(y.shape(), (Dims{2, 6, 4}));
  const auto yv = values(y), av = values(a), bv = values(b), cv = values(c);
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 4; ++k) {
      for (int j = 0; j < 3; ++j) EXPECT_EQ(yv[(i * 6 + j) * 4 + k], av[(i * 3 + j) * 4 + k]);
      EXPECT_EQ(yv[(i * 6 + 3) * 4 + k], bv[i * 4 + k]);
      for (int j = 0; j < 2; ++j) EXPECT_EQ(yv[(i * 6 + 4 + j) * 4 + k], cv[(i * 2 + j) * 4 + k]);
    }
  expect_gradients_match([] { return ops::make_concat(1); }, {a, b, c}, {true, true, true});
  expect_gradients_match([] { return ops::make_concat(-1); }, {a, a}, {true, true});
  EXPECT_THROW(ops::make_concat(0)->forward({a, random_tensor({2, 3, 5}, ENG_F64, 6)}, false), Error);
}

}  // namespace
}  // namespace engine::rt
