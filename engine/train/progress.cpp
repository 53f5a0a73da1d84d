#include "engine/train/progress.hpp"

#include <spdlog/fmt/fmt.h>
#include <unistd.h>

#include <chrono>
#include <cmath>

#include "engine/train/memory_plan.hpp"

namespace engine::train {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string format_progress(const StepMetrics& m, int64_t total_steps, double eta_s) {
  std::string line =
      fmt::format("step {}/{} | loss {:.4f} | lr {:.2e} | grad {:.3f} | {:.0f} tok/s | eta {} | mem {}",
                  m.step, total_steps, m.loss, m.lr, m.grad_norm, m.tokens_per_s, format_duration(eta_s),
                  format_bytes(m.mem_bytes));
  if (m.mfu) line += fmt::format(" | mfu {:.1f}%", *m.mfu * 100.0);
  if (m.skipped) line += " | SKIPPED (non-finite)";
  return line;
}

Progress::Progress(std::FILE* out, bool live, int64_t total_steps, int64_t every)
    : out_(out), live_(live), total_(total_steps), every_(every < 1 ? 1 : every) {}

void Progress::start(int64_t first_step) {
  first_step_ = first_step;
  start_s_ = now_s();
}

void Progress::step(const StepMetrics& m) {
  const double elapsed = now_s() - start_s_;
  const int64_t done = m.step - first_step_;
  const double eta =
      done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total_ - m.step) : NAN;
  const std::string line = format_progress(m, total_, eta);
  if (live_) {
    std::fprintf(out_, "\r\033[K%s", line.c_str());
    line_open_ = true;
  } else if (m.step % every_ == 0 || m.step == total_ || m.skipped) {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

void Progress::eval(const EvalMetrics& m) {
  message(fmt::format("eval at step {}: loss {:.4f} | perplexity {:.3f} | {} tokens", m.step, m.loss,
                      m.perplexity, m.tokens));
}

void Progress::message(const std::string& text) {
  end_live_line();
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

void Progress::finish() { end_live_line(); }

void Progress::end_live_line() {
  if (line_open_) {
    std::fprintf(out_, "\n");
    line_open_ = false;
  }
}

}  // namespace engine::train
