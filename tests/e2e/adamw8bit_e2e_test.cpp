// plugins/adamw8bit end to end: tiny_full with adamw8bit ends within 5% of adamw's final loss (mean of the
// last three logged steps) after the same steps, and a run killed with SIGKILL and resumed (--resume auto) ends with the same
// bytes (weights, optimizer state) and per-step losses as one run straight through.
#include "tests/e2e/e2e_support.hpp"

namespace engine::e2e {
namespace {

// The mean loss of the last three logged steps (logged every 10: steps 130, 140, 150).
double final_loss(const fs::path& out) {
  auto lines = train_lines(out);
  double sum = 0;
  int n = 0;
  for (auto it = lines.rbegin(); it != lines.rend() && n < 3; ++it, ++n) sum += it->second["loss"].get<double>();
  return n > 0 ? sum / n : 0.0;
}

TEST(Adamw8bit, TinyFullWithinFivePercentOfAdamw) {
  const fs::path dir = fresh_dir("adamw8bit_tiny_full");
  auto args = [&](const std::string& opt, const fs::path& out) {
    return std::vector<std::string>{"run",   (source_dir() / "recipes/tiny_full.toml").string(),
                                    "--set", "model.path=" + (dir / "model").string(),
                                    "--set", "train.output_dir=" + out.string(),
                                    "--set", "optimizer.plugin=" + opt,
                                    "--set", "train.eval_every=0",
                                    "--set", "checkpoint.save_every=0",
                                    "--set", "log.every=10"};
  };
  ASSERT_EQ(run_engine(args("adamw", dir / "adamw"), dir / "a.log"), 0) << read_file(dir / "a.log");
  ASSERT_EQ(run_engine(args("adamw8bit", dir / "adamw8bit"), dir / "b.log"), 0) << read_file(dir / "b.log");
  ASSERT_EQ(train_lines(dir / "adamw8bit").size(), train_lines(dir / "adamw").size());
  const double a = final_loss(dir / "adamw"), b = final_loss(dir / "adamw8bit");
  std::cout << "tiny_full final loss (mean of steps 130, 140, 150): adamw " << a << ", adamw8bit " << b << "\n";
  EXPECT_NEAR(b / a, 1.0, 0.05);
  EXPECT_NE(read_file(dir / "b.log").find("optimizer adamw8bit"), std::string::npos);
}

// LoRA tensors are smaller than bitsandbytes' min_8bit_size; 0 puts every one of them on 8-bit states.
std::vector<std::string> lora_args(const fs::path& model, const fs::path& out) {
  return {"run",   (source_dir() / "recipes/tiny_lora.toml").string(),
          "--set", "model.path=" + model.string(),
          "--set", "train.output_dir=" + out.string(),
          "--set", "optimizer.plugin=adamw8bit",
          "--set", "optimizer.min_8bit_size=0",
          "--set", "train.max_steps=60",
          "--set", "checkpoint.save_every=5",
          "--set", "checkpoint.keep_last=0",
          "--set", "train.eval_every=0",
          "--set", "log.every=1"};
}

TEST(Adamw8bit, KillNineThenResumeIsBitwiseIdentical) {
  const fs::path dir = fresh_dir("adamw8bit_resume");
  const fs::path model = dir / "model", a = dir / "straight", b = dir / "killed";
  ASSERT_EQ(run_engine(lora_args(model, a), dir / "a.log"), 0) << read_file(dir / "a.log");
  pid_t pid = spawn(lora_args(model, b), dir / "b.log");
  const bool reached =
      wait_until([&] { return train_lines(b).size() >= 13 && fs::exists(b / "checkpoint-10"); }, 120);
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  ASSERT_TRUE(reached) << read_file(dir / "b.log");
  ASSERT_FALSE(fs::exists(b / "checkpoint-60")) << "the run finished before it could be killed";
  ASSERT_EQ(run_engine(lora_args(model, b), dir / "b.log"), 0) << read_file(dir / "b.log");
  EXPECT_NE(read_file(dir / "b.log").find("resumed from"), std::string::npos);
  const fs::path ca = a / "checkpoint-60", cb = b / "checkpoint-60";
  ASSERT_TRUE(fs::exists(cb / "optimizer.safetensors"));
  EXPECT_TRUE(same_bytes(ca / "adapter_model.safetensors", cb / "adapter_model.safetensors"));
  EXPECT_TRUE(same_bytes(ca / "optimizer.safetensors", cb / "optimizer.safetensors"));
  // the checkpoint holds bitsandbytes' state names, 8-bit codes included
  EXPECT_NE(read_file(ca / "optimizer.safetensors").find(".state1\":{\"dtype\":\"U8\""), std::string::npos);
  auto la = train_lines(a), lb = train_lines(b);
  ASSERT_EQ(lb.size(), 60u);
  for (int64_t s = 1; s <= 60; ++s) EXPECT_EQ(la[s]["loss"].get<double>(), lb[s]["loss"].get<double>()) << s;
}

}  // namespace
}  // namespace engine::e2e
