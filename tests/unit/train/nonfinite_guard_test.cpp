#include "engine/train/nonfinite_guard.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using engine::train::NonfiniteGuard;
using engine::train::StepVerdict;

TEST(NonfiniteGuard, SkipsThenStopsAfterTheLimitInARow) {
  NonfiniteGuard g(3);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(g.check(1.0, 0.5), StepVerdict::Apply);
  EXPECT_EQ(g.check(nan, 0.5), StepVerdict::Skip);
  EXPECT_EQ(g.check(1.0, inf), StepVerdict::Skip);
  EXPECT_EQ(g.in_a_row(), 2);
  EXPECT_EQ(g.check(1.0, 0.5), StepVerdict::Apply);  // a good step resets the streak
  EXPECT_EQ(g.in_a_row(), 0);
  EXPECT_EQ(g.check(inf, 0.5), StepVerdict::Skip);
  EXPECT_EQ(g.check(nan, nan), StepVerdict::Skip);
  EXPECT_EQ(g.check(-inf, 0.5), StepVerdict::Stop);
  EXPECT_EQ(g.total_skipped(), 5);
}
