#include "engine/train/progress.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

using namespace engine::train;

namespace {
std::string run(bool live) {
  std::FILE* f = std::tmpfile();
  Progress p(f, live, 4, 2);
  p.start(0);
  for (int64_t s = 1; s <= 4; ++s) {
    StepMetrics m;
    m.step = s;
    m.loss = 2.0 / static_cast<double>(s);
    m.lr = 1e-3;
    m.tokens_per_s = 1000;
    m.mem_bytes = 3 << 20;
    p.step(m);
  }
  p.eval(EvalMetrics{4, 0.5, 1.6487, 100});
  p.finish();
  std::string out;
  std::rewind(f);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}
}  // namespace

TEST(Progress, PlainLinesEveryNStepsOffATerminal) {
  const std::string out = run(false);
  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_EQ(out.find("step 1/4"), std::string::npos);  // every = 2
  EXPECT_NE(out.find("step 2/4 | loss 1.0000 | lr 1.00e-03"), std::string::npos) << out;
  EXPECT_NE(out.find("step 4/4"), std::string::npos);
  EXPECT_NE(out.find("mem 3.00 MiB"), std::string::npos);
  EXPECT_NE(out.find("eval at step 4: loss 0.5000 | perplexity 1.649"), std::string::npos) << out;
}

TEST(Progress, OneRewrittenLineOnATerminal) {
  const std::string out = run(true);
  EXPECT_NE(out.find("\r\033[Kstep 1/4"), std::string::npos);  // every step, in place
  EXPECT_NE(out.find("\r\033[Kstep 4/4"), std::string::npos);
  EXPECT_NE(out.find("\neval at step 4"), std::string::npos) << "an evaluation ends the live line first";
}

TEST(Progress, Durations) {
  EXPECT_EQ(format_duration(45), "45s");
  EXPECT_EQ(format_duration(187), "3m07s");
  EXPECT_EQ(format_duration(7500), "2h05m");
}
