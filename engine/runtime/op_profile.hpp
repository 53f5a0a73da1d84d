// OpProfile: where a training step's time goes, op by op, on any device (ENGINE_PROFILE_OPS=1).
//
// When enabled, the tape synchronizes the device before and after every node's forward, replay (activation
// checkpointing) and backward, and adds the wall time to (node name, phase); the trainer adds its own
// phases (gradient accumulation into the parameters is part of "backward"; the optimizer step, the gradient
// norm, zeroing the gradients). The synchronizations cost time themselves (a few microseconds each), so a
// profiled step is slower than a normal one: use it for the split, never for the rate. The report is a
// table per step sorted by time. Off (the default) it costs one branch per node. ENGINE_PROFILE_MEMORY=1 adds
// (or, alone, is) the memory view: which op a step's allocator peak is reached in.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace engine::rt {

class Device;

class OpProfile {
 public:
  // The process-wide profile; enabled() reads ENGINE_PROFILE_OPS once.
  static OpProfile& instance();
  // ENGINE_PROFILE_OPS=1: every op synchronized and timed (OpTimer).
  bool enabled() const { return enabled_; }
  // ENGINE_PROFILE_OPS=host: nothing synchronized; the trainer's phases timed on the host (HostTimer), to see
  // whether the host or the device sets the pace of a step: a step whose host phases take as long as the
  // step is host-bound.
  bool host_phases() const { return host_; }
  // ENGINE_PROFILE_MEMORY=1 (alone or with the others): nothing synchronized; every op (OpTimer) notes how far
  // the device allocator's peak rose while it ran, so the report names the op at which a step reaches its peak
  // (the trainer resets the peak at each step's start) and the ops that raised it most.
  bool memory() const { return memory_; }
  bool active() const { return enabled_ || host_ || memory_; }
  // What OpTimer needs: `device` when it times or watches memory, else null (the timer then does nothing).
  Device* op_device(Device* device) const { return enabled_ || memory_ ? device : nullptr; }

  void add(const std::string& name, const char* phase, double seconds);
  // The allocator's peak was `before` when (name, phase) started and `after` when it ended (after > before).
  void add_peak(const std::string& name, const char* phase, int64_t before, int64_t after);
  void reset();
  // "op/phase  ms per step  calls per step  share" sorted by time; `steps` divides the totals.
  std::string report(int64_t steps) const;

 private:
  OpProfile();
  struct Cell {
    double seconds = 0;
    int64_t calls = 0;
  };
  struct PeakCell {
    int64_t highest = 0;  // the highest peak it reached
    int64_t raised = 0;   // bytes it raised the peak by, summed
    int64_t times = 0;
  };
  bool enabled_ = false;
  bool host_ = false;
  bool memory_ = false;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Cell> cells_;
  std::map<std::pair<std::string, std::string>, PeakCell> peaks_;
};

// Times one region on the host clock, without synchronizing, when host_phases() is on. A phase named "wall"
// is reported as the step's wall time, not as a row of the split.
class HostTimer {
 public:
  HostTimer(const char* name, const char* phase);
  ~HostTimer();
  HostTimer(const HostTimer&) = delete;
  HostTimer& operator=(const HostTimer&) = delete;

 private:
  bool on_ = false;
  const char* name_;
  const char* phase_;
  double t0_ = 0;
};

// Times one region when profiling is on: synchronizes `device` at construction and destruction.
class OpTimer {
 public:
  OpTimer(Device* device, const char* name, const char* phase);
  ~OpTimer();
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  Device* device_ = nullptr;  // null: profiling off
  const char* name_;
  const char* phase_;
  double t0_ = 0;
  int64_t peak0_ = 0;  // ENGINE_PROFILE_MEMORY: the allocator's peak when the op started
};

}  // namespace engine::rt
