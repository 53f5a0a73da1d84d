// LrSchedule: the learning rate of each optimizer step, as Hugging Face transformers computes it.
//
// Steps are 1-based (the optimizer's eng_optim_step.step); step s uses transformers' lambda at index i = s-1,
// so a run with warmup starts at lr 0 exactly like get_*_schedule_with_warmup:
//   warmup  (i < W):   lr * i / W
//   constant:          lr
//   linear:            min_lr + (lr - min_lr) * max(0, (N - i) / (N - W))
//   cosine:            min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * (i - W) / (N - W)))
// with N the total number of optimizer steps and W = warmup_steps, or ceil(warmup_ratio * N) when
// warmup_steps is 0 (transformers' get_warmup_steps). min_lr = 0 gives the plain transformers schedules;
// min_lr > 0 gives get_cosine_with_min_lr_schedule_with_warmup (and the same floor for linear).
#pragma once

#include <cstdint>
#include <string>

namespace engine::train {

enum class ScheduleKind { Constant, Linear, Cosine };

// "constant" | "linear" | "cosine"; throws engine::Error naming the accepted values.
ScheduleKind parse_schedule_kind(const std::string& name);
const char* schedule_kind_name(ScheduleKind kind);

struct ScheduleConfig {
  ScheduleKind kind = ScheduleKind::Cosine;
  double lr = 1e-4;
  int64_t warmup_steps = 0;   // wins over warmup_ratio when > 0
  double warmup_ratio = 0.0;  // fraction of total_steps, rounded up
  double min_lr = 0.0;
  int64_t total_steps = 1;  // optimizer steps of the whole run
};

class LrSchedule {
 public:
  // Throws engine::Error for an inconsistent config (negative values, min_lr > lr, total_steps < 1).
  explicit LrSchedule(const ScheduleConfig& config);
  // The learning rate of optimizer step `step` (1-based).
  double lr_at(int64_t step) const;
  int64_t warmup_steps() const { return warmup_; }
  const ScheduleConfig& config() const { return config_; }

 private:
  ScheduleConfig config_;
  int64_t warmup_;
};

}  // namespace engine::train
