#include "engine/train/metrics_log.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

namespace fs = std::filesystem;
using engine::train::EvalMetrics;
using engine::train::MetricsLog;
using engine::train::StepMetrics;

namespace {
std::vector<nlohmann::json> read_lines(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream f(p);
  std::string line;
  while (std::getline(f, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}
}  // namespace

TEST(MetricsLog, WritesOneObjectPerStepAndTruncatesOnResume) {
  fs::path dir = fs::temp_directory_path() / "metrics_log_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path p = dir / "metrics.jsonl";
  {
    MetricsLog log(p, -1);
    for (int64_t s = 1; s <= 5; ++s) {
      StepMetrics m;
      m.step = s;
      m.loss = 3.0 - 0.1 * s;
      m.lr = 1e-3;
      m.grad_norm = s == 4 ? std::numeric_limits<double>::quiet_NaN() : 1.0;
      m.tokens = 100;
      m.tokens_per_s = 1000;
      m.mem_bytes = 1 << 20;
      m.skipped = s == 4;
      log.write(m);
    }
    log.write(EvalMetrics{5, 2.0, 7.389, 64});
  }
  auto lines = read_lines(p);
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0]["step"], 1);
  EXPECT_DOUBLE_EQ(lines[0]["loss"].get<double>(), 2.9);
  for (const char* k : {"lr", "grad_norm", "tokens", "tokens_per_s", "mem_bytes"})
    EXPECT_TRUE(lines[0].contains(k)) << k;
  EXPECT_TRUE(lines[3]["grad_norm"].is_null());
  EXPECT_TRUE(lines[3]["skipped"].get<bool>());
  EXPECT_DOUBLE_EQ(lines[5]["eval_loss"].get<double>(), 2.0);

  {  // a run resumed from step 3 drops what the killed run logged after it
    MetricsLog log(p, 3);
    StepMetrics m;
    m.step = 4;
    m.loss = 1.5;
    log.write(m);
  }
  lines = read_lines(p);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[2]["step"], 3);
  EXPECT_EQ(lines[3]["step"], 4);
  EXPECT_DOUBLE_EQ(lines[3]["loss"].get<double>(), 1.5);
  fs::remove_all(dir);
}
