#include "engine/train/trainer_state.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/core/error.hpp"

namespace fs = std::filesystem;
using engine::train::TrainerState;

TEST(TrainerState, RoundTripsEveryFieldExactly) {
  TrainerState s;
  s.step = 37;
  s.total_steps = 200;
  s.tokens_seen = 123456;
  s.sampler = {{"epoch", 2}, {"position", 17}, {"seed", 42}};
  s.rng_state = 0xFEDCBA9876543210ull;  // above 2^53: must survive JSON as text
  s.nonfinite_in_a_row = 2;
  s.nonfinite_total = 5;
  s.last_loss = 1.2345678901234567;
  s.schedule = "cosine lr=0.01 warmup=5 min_lr=0.001 total=200";
  s.weights = "adapter";
  const fs::path f = fs::temp_directory_path() / "trainer_state_test.json";
  s.write(f);
  TrainerState r = TrainerState::read(f);
  EXPECT_EQ(r.step, 37);
  EXPECT_EQ(r.total_steps, 200);
  EXPECT_EQ(r.tokens_seen, 123456);
  EXPECT_EQ(r.sampler, s.sampler);
  EXPECT_EQ(r.rng_state, 0xFEDCBA9876543210ull);
  EXPECT_EQ(r.nonfinite_in_a_row, 2);
  EXPECT_EQ(r.nonfinite_total, 5);
  EXPECT_EQ(r.last_loss, s.last_loss);
  EXPECT_EQ(r.schedule, s.schedule);
  EXPECT_EQ(r.weights, "adapter");
  std::ofstream(f) << "{\"step\": 3";
  EXPECT_THROW(TrainerState::read(f), engine::Error);
  fs::remove(f);
  EXPECT_THROW(TrainerState::read(f), engine::Error);
}
