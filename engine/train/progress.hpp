// Progress: what a user sees on stderr during a run. On a terminal one live line rewritten in place
//   step 12/200 | loss 2.3412 | lr 1.80e-04 | 1534 tok/s | eta 1m02s | mem 412.3 MiB
// otherwise (a log file, CI) the same text as plain lines every `every` steps. Evaluations and messages get
// lines of their own; summary() is printed at the end.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "engine/train/metrics_log.hpp"

namespace engine::train {

std::string format_duration(double seconds);  // "45s", "3m07s", "2h05m"

// The text of one progress line (no newline, no terminal escapes).
std::string format_progress(const StepMetrics& m, int64_t total_steps, double eta_s);

class Progress {
 public:
  // out: usually stderr; live: rewrite one line (a terminal)
  Progress(std::FILE* out, bool live, int64_t total_steps, int64_t every);
  // first_step: the step the run (re)started from, for the ETA
  void start(int64_t first_step);
  void step(const StepMetrics& m);
  void eval(const EvalMetrics& m);
  void message(const std::string& text);  // a line of its own (ends a live line first)
  void finish();

 private:
  void end_live_line();
  std::FILE* out_;
  bool live_;
  int64_t total_;
  int64_t every_;
  int64_t first_step_ = 0;
  double start_s_ = 0.0;
  bool line_open_ = false;
};

// true when stderr is a terminal
bool stderr_is_terminal();

}  // namespace engine::train
