// NonfiniteGuard: what to do after a step whose loss or gradient norm is NaN or Inf. The step is skipped (no
// optimizer update, gradients dropped) and counted; after `max_in_a_row` such steps in a row the run stops,
// saving the last good state. A finite step resets the streak.
#pragma once

#include <cstdint>

namespace engine::train {

enum class StepVerdict { Apply, Skip, Stop };

class NonfiniteGuard {
 public:
  explicit NonfiniteGuard(int64_t max_in_a_row) : max_(max_in_a_row < 1 ? 1 : max_in_a_row) {}
  StepVerdict check(double loss, double grad_norm);
  int64_t in_a_row() const { return streak_; }
  int64_t total_skipped() const { return total_; }
  // Restores the counters of a checkpoint.
  void restore(int64_t in_a_row, int64_t total) { streak_ = in_a_row, total_ = total; }

 private:
  int64_t max_;
  int64_t streak_ = 0;
  int64_t total_ = 0;
};

}  // namespace engine::train
