// Non-finite steps: with an absurd learning rate the first step blows the adapter up; every later step has a
// non-finite loss, is skipped and counted, and after train.max_nonfinite_steps in a row the run stops with a
// message (exit 1) and a checkpoint holding the last good state (the weights after step 1).
#include "tests/e2e/e2e_support.hpp"

namespace engine::e2e {
namespace {

TEST(Nonfinite, SkipsThenStopsWithTheLastGoodState) {
  const fs::path dir = fresh_dir("nonfinite");
  const fs::path out = dir / "out";
  const int rc = run_engine({"run",   (source_dir() / "recipes/tiny_lora.toml").string(),
                             "--set", "model.path=" + (dir / "model").string(),
                             "--set", "train.output_dir=" + out.string(),
                             "--set", "optimizer.lr=1e30",
                             "--set", "scheduler.kind=constant",
                             "--set", "scheduler.warmup_steps=0",
                             "--set", "scheduler.min_lr=0",
                             "--set", "train.max_nonfinite_steps=3",
                             "--set", "train.max_steps=20",
                             "--set", "checkpoint.save_every=1",
                             "--set", "checkpoint.keep_last=0",
                             "--set", "train.eval_every=0",
                             "--set", "log.every=1"},
                            dir / "log.txt");
  const std::string log = read_file(dir / "log.txt");
  EXPECT_EQ(rc, 1) << log;
  EXPECT_NE(log.find("3 steps in a row had a non-finite loss"), std::string::npos) << log;
  auto lines = train_lines(out);
  ASSERT_EQ(lines.size(), 4u) << log;
  EXPECT_FALSE(lines[1].contains("skipped"));
  for (int64_t s = 2; s <= 4; ++s) EXPECT_TRUE(lines[s].value("skipped", false)) << "step " << s;
  EXPECT_EQ(read_file(out / "latest"), "checkpoint-4\n");
  // skipped steps change nothing: the checkpoint after the stop holds the weights of step 1
  EXPECT_TRUE(same_bytes(out / "checkpoint-4/adapter_model.safetensors",
                         out / "checkpoint-1/adapter_model.safetensors"));
  EXPECT_TRUE(
      same_bytes(out / "checkpoint-4/optimizer.safetensors", out / "checkpoint-1/optimizer.safetensors"));
  auto state = nlohmann::json::parse(read_file(out / "checkpoint-4/trainer_state.json"));
  EXPECT_EQ(state["nonfinite_in_a_row"], 3);
  EXPECT_EQ(state["step"], 4);
}

}  // namespace
}  // namespace engine::e2e
