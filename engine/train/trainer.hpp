// The training loop of `engine run`: for each optimizer step, grad_accum micro-batches forward and backward
// (forward_backward.hpp), the global gradient norm, a non-finite check (skip, or stop after
// train.max_nonfinite_steps in a row), the clipping factor and the scheduled learning rate handed to the
// optimizer, metrics.jsonl and the progress line, evaluation every train.eval_every steps, and checkpoints
// every checkpoint.save_every steps and at the end. A run resumes from a checkpoint (--resume) exactly:
// weights, optimizer state, data cursor and generator continue where they were, so k steps + resume to N
// gives the same bits as N steps straight.
#pragma once

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "engine/session/session.hpp"
#include "engine/train/data_pipeline.hpp"
#include "engine/train/metrics_log.hpp"

namespace engine::train {

struct TrainOptions {
  std::string resume = "auto";  // auto | none | a checkpoint directory
  bool allow_missing_optimizer_state = false;  // --allow-missing-optimizer-state: resume with a fresh optimizer
  std::FILE* progress_out = stderr;
  bool live_progress = false;                         // one rewritten line (stderr is a terminal)
  const std::atomic<bool>* stop_requested = nullptr;  // set by SIGINT/SIGTERM: finish the step, save, return
};

struct TrainResult {
  int64_t first_step = 0;  // the step the run started after (0, or the resumed checkpoint's)
  int64_t last_step = 0;
  int64_t total_steps = 0;
  std::vector<double> losses;  // per step run here (NaN for skipped ones)
  std::optional<EvalMetrics> last_eval;
  std::filesystem::path last_checkpoint;
  double seconds = 0.0;
  int64_t peak_mem_bytes = 0;
  int64_t peak_reserved_bytes = 0;
  int64_t nonfinite_skipped = 0;
  bool stopped_nonfinite = false;  // stopped after max_nonfinite_steps in a row
  bool interrupted = false;        // stop_requested
};

// Total optimizer steps of a recipe: train.max_steps, or epochs * (rows per epoch / rows per step) (at least
// 1).
int64_t total_steps(const recipe::Recipe& recipe, uint64_t rows_per_epoch);

TrainResult train(session::TrainingSession& session, DataPipeline& data, const TrainOptions& options);

// The closing report: steps, time, loss first -> last, evaluation, where the weights are and how to try them;
// after an interrupt, how to continue.
std::string format_summary(const session::TrainingSession& session, const TrainResult& result);

}  // namespace engine::train
