// LrSchedule against transformers' schedules (tests/data/train/schedules.json,
// scripts/fixtures/make_peft_fixtures.py).
#include "engine/train/lr_schedule.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/core/error.hpp"

using engine::train::LrSchedule;
using engine::train::ScheduleConfig;
using engine::train::ScheduleKind;

namespace {

nlohmann::json fixture() {
  std::ifstream f(std::string(std::getenv("ENGINE_TEST_DATA")) + "/train/schedules.json");
  EXPECT_TRUE(f.good());
  return nlohmann::json::parse(f);
}

void expect_matches(const nlohmann::json& fx, const char* name, ScheduleKind kind, int64_t warmup,
                    double min_lr) {
  ScheduleConfig c;
  c.kind = kind;
  c.lr = fx["lr"].get<double>();
  c.warmup_steps = warmup;
  c.min_lr = min_lr;
  c.total_steps = fx["total_steps"].get<int64_t>();
  LrSchedule s(c);
  const auto& want = fx["cases"][name];
  ASSERT_EQ(static_cast<int64_t>(want.size()), c.total_steps);
  for (int64_t step = 1; step <= c.total_steps; ++step) {
    EXPECT_NEAR(s.lr_at(step), want[static_cast<size_t>(step - 1)].get<double>(), 1e-12)
        << name << " step " << step;
  }
}

}  // namespace

TEST(LrSchedule, MatchesTransformers) {
  auto fx = fixture();
  const int64_t w = fx["warmup_steps"].get<int64_t>();
  expect_matches(fx, "constant", ScheduleKind::Constant, 0, 0.0);
  expect_matches(fx, "constant_warmup", ScheduleKind::Constant, w, 0.0);
  expect_matches(fx, "linear_warmup", ScheduleKind::Linear, w, 0.0);
  expect_matches(fx, "cosine_warmup", ScheduleKind::Cosine, w, 0.0);
  expect_matches(fx, "cosine_warmup_min_lr", ScheduleKind::Cosine, w, fx["min_lr"].get<double>());
}

TEST(LrSchedule, WarmupRatioRoundsUp) {
  ScheduleConfig c;
  c.kind = ScheduleKind::Linear;
  c.lr = 1.0;
  c.warmup_ratio = 0.1;
  c.total_steps = 25;  // ceil(2.5) = 3
  LrSchedule s(c);
  EXPECT_EQ(s.warmup_steps(), 3);
  EXPECT_DOUBLE_EQ(s.lr_at(1), 0.0);
  EXPECT_DOUBLE_EQ(s.lr_at(3), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(s.lr_at(4), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(25), 1.0 / 22.0);
}

TEST(LrSchedule, RejectsInconsistentConfigs) {
  ScheduleConfig c;
  c.lr = 1e-4;
  c.min_lr = 1e-3;
  EXPECT_THROW(LrSchedule{c}, engine::Error);
  c.min_lr = 0;
  c.total_steps = 0;
  EXPECT_THROW(LrSchedule{c}, engine::Error);
  EXPECT_THROW(engine::train::parse_schedule_kind("cosin"), engine::Error);
  EXPECT_EQ(engine::train::parse_schedule_kind("cosine"), ScheduleKind::Cosine);
}
