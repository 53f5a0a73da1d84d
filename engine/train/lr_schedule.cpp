#include "engine/train/lr_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/core/error.hpp"

namespace engine::train {

ScheduleKind parse_schedule_kind(const std::string& name) {
  if (name == "constant") return ScheduleKind::Constant;
  if (name == "linear") return ScheduleKind::Linear;
  if (name == "cosine") return ScheduleKind::Cosine;
  fail("unknown learning-rate schedule '{}': use one of constant, linear, cosine", name);
}

const char* schedule_kind_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::Constant:
      return "constant";
    case ScheduleKind::Linear:
      return "linear";
    case ScheduleKind::Cosine:
      return "cosine";
  }
  return "?";
}

LrSchedule::LrSchedule(const ScheduleConfig& config) : config_(config) {
  if (!(config.lr >= 0.0) || !std::isfinite(config.lr))
    fail("the learning rate must be a finite number >= 0, got {}", config.lr);
  if (config.total_steps < 1)
    fail("the schedule needs at least one optimizer step, got total_steps = {}", config.total_steps);
  if (config.warmup_steps < 0) fail("warmup_steps must be >= 0, got {}", config.warmup_steps);
  if (config.warmup_ratio < 0.0 || config.warmup_ratio > 1.0) {
    fail("warmup_ratio must lie in [0, 1], got {}", config.warmup_ratio);
  }
  if (config.min_lr < 0.0 || config.min_lr > config.lr) {
    fail("min_lr must lie in [0, lr] = [0, {}], got {}", config.lr, config.min_lr);
  }
  warmup_ =
      config.warmup_steps > 0
          ? config.warmup_steps
          : static_cast<int64_t>(std::ceil(config.warmup_ratio * static_cast<double>(config.total_steps)));
}

double LrSchedule::lr_at(int64_t step) const {
  const double i = static_cast<double>(std::max<int64_t>(step - 1, 0));
  const double w = static_cast<double>(warmup_);
  const double n = static_cast<double>(config_.total_steps);
  if (i < w) return config_.lr * i / std::max(1.0, w);
  if (config_.kind == ScheduleKind::Constant) return config_.lr;
  const double span = std::max(1.0, n - w);
  double factor = 0.0;
  if (config_.kind == ScheduleKind::Linear) {
    factor = std::max(0.0, (n - i) / span);
  } else {
    const double progress = (i - w) / span;
    factor = std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
  }
  return config_.min_lr + (config_.lr - config_.min_lr) * factor;
}

}  // namespace engine::train
