// MetricsLog: <output_dir>/metrics.jsonl, one JSON object per logged step, flushed line by line so that a
// killed run keeps what it logged. Training lines:
//   {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mem_bytes", "model_tflops" and "mfu" (CUDA),
//    "skipped" (true for a step dropped as non-finite)}
// evaluation lines: {"step", "eval_loss", "eval_perplexity", "eval_tokens"}.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>

namespace engine::train {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0.0;  // mean over the label tokens of the optimizer step
  double lr = 0.0;
  double grad_norm = 0.0;     // global L2 norm before clipping
  int64_t tokens = 0;         // label tokens of the step
  double tokens_per_s = 0.0;  // input tokens (all positions) per second of the step
  int64_t mem_bytes = 0;      // allocator peak during the step
  int64_t mem_reserved_bytes = 0;  // what the caching allocator holds from the device (peak; 0 without a cache)
  std::optional<double> model_tflops;  // model FLOPs (model_flops.hpp) per second / 1e12, with mfu
  std::optional<double> mfu;           // model_tflops / the device's measured GEMM ceiling (CUDA)
  bool skipped = false;
};

struct EvalMetrics {
  int64_t step = 0;
  double loss = 0.0;
  double perplexity = 0.0;
  int64_t tokens = 0;
};

class MetricsLog {
 public:
  // resume_step >= 0: keeps only the lines of steps <= resume_step (a killed run may have logged further
  // than its last checkpoint) and appends; < 0: starts a new file.
  MetricsLog(const std::filesystem::path& path, int64_t resume_step);
  void write(const StepMetrics& m);
  void write(const EvalMetrics& m);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace engine::train
