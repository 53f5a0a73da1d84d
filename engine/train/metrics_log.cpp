#include "engine/train/metrics_log.hpp"

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/core/error.hpp"

namespace engine::train {
namespace {

// JSON has no NaN/Inf: non-finite numbers are written as null.
nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

MetricsLog::MetricsLog(const std::filesystem::path& path, int64_t resume_step) : path_(path) {
  std::vector<std::string> kept;
  if (resume_step >= 0) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
          j["step"].get<int64_t>() <= resume_step) {
        kept.push_back(line);
      }
    }
  }
  out_.open(path, std::ios::trunc);
  if (!out_) fail_with(ENG_ERR_IO, "cannot write the metrics file {}", path.string());
  for (const auto& l : kept) out_ << l << '\n';
  out_.flush();
}

void MetricsLog::write(const StepMetrics& m) {
  nlohmann::json j;
  j["step"] = m.step;
  j["loss"] = number(m.loss);
  j["lr"] = m.lr;
  j["grad_norm"] = number(m.grad_norm);
  j["tokens"] = m.tokens;
  j["tokens_per_s"] = number(m.tokens_per_s);
  j["mem_bytes"] = m.mem_bytes;
  if (m.mem_reserved_bytes > 0) j["mem_reserved_bytes"] = m.mem_reserved_bytes;
  if (m.model_tflops) j["model_tflops"] = number(*m.model_tflops);
  if (m.mfu) j["mfu"] = number(*m.mfu);
  if (m.skipped) j["skipped"] = true;
  out_ << j.dump() << '\n';
  out_.flush();
}

void MetricsLog::write(const EvalMetrics& m) {
  nlohmann::json j;
  j["step"] = m.step;
  j["eval_loss"] = number(m.loss);
  j["eval_perplexity"] = number(m.perplexity);
  j["eval_tokens"] = m.tokens;
  out_ << j.dump() << '\n';
  out_.flush();
}

}  // namespace engine::train
