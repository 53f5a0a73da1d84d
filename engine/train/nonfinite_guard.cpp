#include "engine/train/nonfinite_guard.hpp"

#include <cmath>

namespace engine::train {

StepVerdict NonfiniteGuard::check(double loss, double grad_norm) {
  if (std::isfinite(loss) && std::isfinite(grad_norm)) {
    streak_ = 0;
    return StepVerdict::Apply;
  }
  ++streak_;
  ++total_;
  return streak_ >= max_ ? StepVerdict::Stop : StepVerdict::Skip;
}

}  // namespace engine::train
