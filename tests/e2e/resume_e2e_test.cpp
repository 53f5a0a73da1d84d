// Exact resume: N steps straight, or k steps + kill -9 + resume to N, give bitwise-identical adapters,
// optimizer state and per-step losses (CPU). SIGTERM finishes the step, saves, exits 0, and resuming from
// there also ends bitwise identical.
#include "tests/e2e/e2e_support.hpp"

namespace engine::e2e {
namespace {

std::vector<std::string> run_args(const fs::path& model, const fs::path& out) {
  return {"run",   (source_dir() / "recipes/tiny_lora.toml").string(),
          "--set", "model.path=" + model.string(),
          "--set", "train.output_dir=" + out.string(),
          "--set", "train.max_steps=80",
          "--set", "checkpoint.save_every=5",
          "--set", "checkpoint.keep_last=0",
          "--set", "train.eval_every=0",
          "--set", "log.every=1",
          "--set", "peft.lora_dropout=0.1"};  // dropout draws from the generator: it must resume too
}

void expect_same_run(const fs::path& a, const fs::path& b, int64_t steps) {
  const fs::path ca = a / ("checkpoint-" + std::to_string(steps)),
                 cb = b / ("checkpoint-" + std::to_string(steps));
  ASSERT_TRUE(fs::exists(cb / "adapter_model.safetensors"));
  EXPECT_TRUE(same_bytes(ca / "adapter_model.safetensors", cb / "adapter_model.safetensors"))
      << "adapters differ";
  EXPECT_TRUE(same_bytes(ca / "optimizer.safetensors", cb / "optimizer.safetensors"))
      << "optimizer states differ";
  auto la = train_lines(a), lb = train_lines(b);
  ASSERT_EQ(la.size(), static_cast<size_t>(steps));
  ASSERT_EQ(lb.size(), static_cast<size_t>(steps));
  for (int64_t s = 1; s <= steps; ++s) {
    EXPECT_EQ(la[s]["loss"].get<double>(), lb[s]["loss"].get<double>()) << "step " << s;
    EXPECT_EQ(la[s]["grad_norm"].get<double>(), lb[s]["grad_norm"].get<double>()) << "step " << s;
  }
}

TEST(Resume, KillNineThenResumeIsBitwiseIdentical) {
  const fs::path dir = fresh_dir("resume");
  const fs::path model = dir / "model", a = dir / "straight", b = dir / "killed", c = dir / "sigterm";
  ASSERT_EQ(run_engine(run_args(model, a), dir / "a.log"), 0) << read_file(dir / "a.log");

  // k steps, then kill -9 between checkpoints
  pid_t pid = spawn(run_args(model, b), dir / "b.log");
  const bool reached =
      wait_until([&] { return train_lines(b).size() >= 13 && fs::exists(b / "checkpoint-10"); }, 120);
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  ASSERT_TRUE(reached) << read_file(dir / "b.log");
  ASSERT_FALSE(fs::exists(b / "checkpoint-80")) << "the run finished before it could be killed";
  const size_t logged_before = train_lines(b).size();
  ASSERT_EQ(run_engine(run_args(model, b), dir / "b.log"), 0) << read_file(dir / "b.log");  // --resume auto
  EXPECT_NE(read_file(dir / "b.log").find("resumed from"), std::string::npos);
  std::cout << "killed after " << logged_before << " logged steps, resumed from the newest checkpoint\n";
  expect_same_run(a, b, 80);

  // SIGTERM: finish the step, save, exit 0; then resume to the end
  pid = spawn(run_args(model, c), dir / "c.log");
  ASSERT_TRUE(wait_until([&] { return train_lines(c).size() >= 7; }, 120));
  kill(pid, SIGTERM);
  EXPECT_EQ(wait_exit(pid), 0) << read_file(dir / "c.log");
  EXPECT_NE(read_file(dir / "c.log").find("run the same command again to continue"), std::string::npos)
      << "the interrupted run does not say how to continue:\n"
      << read_file(dir / "c.log");
  const std::string latest = read_file(c / "latest");
  const int64_t stopped_at = std::stoll(latest.substr(std::string("checkpoint-").size()));
  EXPECT_EQ(stopped_at, static_cast<int64_t>(train_lines(c).size()))
      << "the checkpoint is not at the last finished step";
  EXPECT_LT(stopped_at, 80);
  ASSERT_EQ(run_engine(run_args(model, c), dir / "c.log"), 0) << read_file(dir / "c.log");
  expect_same_run(a, c, 80);

  // --resume none starts over (and refuses nothing); a checkpoint directory resumes from it
  const fs::path d = dir / "from_dir";
  auto args = run_args(model, d);
  args.push_back("--resume");
  args.push_back((a / "checkpoint-20").string());
  ASSERT_EQ(run_engine(args, dir / "d.log"), 0) << read_file(dir / "d.log");
  EXPECT_TRUE(same_bytes(a / "checkpoint-80/adapter_model.safetensors",
                         d / "checkpoint-80/adapter_model.safetensors"));
}

}  // namespace
}  // namespace engine::e2e

namespace engine::e2e {
namespace {

// Full fine-tuning resumes exactly too: fp32 weights in model.safetensors, optimizer state, data cursor.
TEST(Resume, FullFineTuningFromACheckpointDirectoryIsBitwiseIdentical) {
  const fs::path dir = fresh_dir("resume_full");
  auto args = [&](const fs::path& out) {
    return std::vector<std::string>{"run",   (source_dir() / "recipes/tiny_full.toml").string(),
                                    "--set", "model.path=" + (dir / "model").string(),
                                    "--set", "train.output_dir=" + out.string(),
                                    "--set", "train.max_steps=12",
                                    "--set", "checkpoint.save_every=4",
                                    "--set", "checkpoint.keep_last=0",
                                    "--set", "train.eval_every=0",
                                    "--set", "log.every=1"};
  };
  ASSERT_EQ(run_engine(args(dir / "a"), dir / "a.log"), 0) << read_file(dir / "a.log");
  auto resumed = args(dir / "b");
  resumed.push_back("--resume");
  resumed.push_back((dir / "a/checkpoint-4").string());
  ASSERT_EQ(run_engine(resumed, dir / "b.log"), 0) << read_file(dir / "b.log");
  EXPECT_TRUE(
      same_bytes(dir / "a/checkpoint-12/model.safetensors", dir / "b/checkpoint-12/model.safetensors"));
  EXPECT_TRUE(same_bytes(dir / "a/checkpoint-12/optimizer.safetensors",
                         dir / "b/checkpoint-12/optimizer.safetensors"));
  EXPECT_FALSE(
      same_bytes(dir / "a/checkpoint-4/model.safetensors", dir / "a/checkpoint-12/model.safetensors"));
  auto la = train_lines(dir / "a"), lb = train_lines(dir / "b");
  for (int64_t s = 5; s <= 12; ++s) EXPECT_EQ(la[s]["loss"].get<double>(), lb[s]["loss"].get<double>()) << s;
}

}  // namespace
}  // namespace engine::e2e
