// How many optimizer steps a recipe runs: train.max_steps, or epochs x (rows per epoch / rows per step).
#include <gtest/gtest.h>

#include "engine/train/trainer.hpp"

using engine::train::total_steps;

TEST(TotalSteps, MaxStepsWinsOverEpochs) {
  engine::recipe::Recipe r;
  r.train.micro_batch_size = 4;
  r.train.grad_accum = 2;
  r.train.epochs = 3;
  r.train.max_steps = 17;
  EXPECT_EQ(total_steps(r, 1000), 17);
}

TEST(TotalSteps, EpochsTimesFullStepsPerEpoch) {
  engine::recipe::Recipe r;
  r.train.micro_batch_size = 4;
  r.train.grad_accum = 2;
  r.train.epochs = 3;
  EXPECT_EQ(total_steps(r, 290), 3 * 36);  // 290 rows / 8 rows per step = 36 full steps
  EXPECT_EQ(total_steps(r, 5), 3);         // fewer rows than a step: still one step per epoch
}
