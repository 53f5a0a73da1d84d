// recipes/tiny_qlora.toml end to end (nf4 base, LoRA, adamw8bit, CPU): it trains, its eval loss after the 200
// steps lands within 10% of recipes/tiny_lora.toml's after the same steps, the merged export dequantizes the
// nf4 base to bf16 and says so, `engine plan` accounts for the nf4 bytes and the 8-bit state, and a kill -9 + --resume auto run ends with the same adapter and optimizer bytes.
#include "tests/e2e/e2e_support.hpp"

namespace engine::e2e {
namespace {

double eval_loss_at(const fs::path& out, int64_t step) {
  for (const auto& j : read_metrics(out))
    if (j.contains("eval_loss") && j["step"].get<int64_t>() == step) return j["eval_loss"].get<double>();
  return -1.0;
}

std::vector<std::string> args(const std::string& recipe, const fs::path& dir, const std::string& name) {
  return {"run", (source_dir() / recipe).string(), "--set", "model.path=" + (dir / ("model_" + name)).string(),
          "--set", "train.output_dir=" + (dir / name).string(), "--set", "checkpoint.save_every=0"};
}

TEST(TinyQlora, EvalLossWithinTenPercentOfTinyLora) {
  const fs::path dir = fresh_dir("tiny_qlora");
  ASSERT_EQ(run_engine(args("recipes/tiny_lora.toml", dir, "lora"), dir / "lora.log"), 0)
      << read_file(dir / "lora.log");
  ASSERT_EQ(run_engine(args("recipes/tiny_qlora.toml", dir, "qlora"), dir / "qlora.log"), 0)
      << read_file(dir / "qlora.log");
  const double lora = eval_loss_at(dir / "lora", 200), qlora = eval_loss_at(dir / "qlora", 200);
  std::cout << "eval loss at step 200: tiny_lora " << lora << ", tiny_qlora " << qlora << "\n";
  ASSERT_GT(lora, 0.0);
  ASSERT_GT(qlora, 0.0);
  EXPECT_NEAR(qlora / lora, 1.0, 0.10);
  const std::string log = read_file(dir / "qlora.log");
  EXPECT_NE(log.find("optimizer adamw8bit"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(dir / "qlora/checkpoint-200/adapter_model.safetensors"));

  // the merged export goes through the nf4 base dequantized to bf16, says so, and verifies
  ASSERT_EQ(run_engine({"export", "--checkpoint", (dir / "qlora/checkpoint-200").string(), "--merged", "--out",
                        (dir / "merged").string(), "--verify"},
                       dir / "export.log"),
            0)
      << read_file(dir / "export.log");
  EXPECT_NE(read_file(dir / "export.log").find("the base was quantized with nf4 in training: dequantized 14 weights to bf16"),
            std::string::npos)
      << read_file(dir / "export.log");

  ASSERT_EQ(run_engine({"plan", (source_dir() / "recipes/tiny_qlora.toml").string(), "--set",
                        "model.path=" + (dir / "model_qlora").string()},
                       dir / "plan.log"),
            0)
      << read_file(dir / "plan.log");
  const std::string plan = read_file(dir / "plan.log");
  EXPECT_NE(plan.find("quantized projection elements at 0.515869140625 B (scales included)"), std::string::npos)
      << plan;
  EXPECT_NE(plan.find("2.03125 B per trainable element"), std::string::npos) << plan;
}

TEST(TinyQlora, KillNineThenResumeIsBitwiseIdentical) {
  const fs::path dir = fresh_dir("tiny_qlora_resume");
  auto run_args = [&](const fs::path& out) {
    return std::vector<std::string>{"run",   (source_dir() / "recipes/tiny_qlora.toml").string(),
                                    "--set", "model.path=" + (dir / "model").string(),
                                    "--set", "train.output_dir=" + out.string(),
                                    "--set", "train.max_steps=60",
                                    "--set", "checkpoint.save_every=5",
                                    "--set", "checkpoint.keep_last=0",
                                    "--set", "train.eval_every=0",
                                    "--set", "optimizer.min_8bit_size=0",
                                    "--set", "log.every=1"};
  };
  const fs::path a = dir / "straight", b = dir / "killed";
  ASSERT_EQ(run_engine(run_args(a), dir / "a.log"), 0) << read_file(dir / "a.log");
  pid_t pid = spawn(run_args(b), dir / "b.log");
  const bool reached =
      wait_until([&] { return train_lines(b).size() >= 13 && fs::exists(b / "checkpoint-10"); }, 120);
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  ASSERT_TRUE(reached) << read_file(dir / "b.log");
  ASSERT_FALSE(fs::exists(b / "checkpoint-60")) << "the run finished before it could be killed";
  ASSERT_EQ(run_engine(run_args(b), dir / "b.log"), 0) << read_file(dir / "b.log");
  EXPECT_NE(read_file(dir / "b.log").find("resumed from"), std::string::npos);
  EXPECT_TRUE(same_bytes(a / "checkpoint-60/adapter_model.safetensors", b / "checkpoint-60/adapter_model.safetensors"));
  EXPECT_TRUE(same_bytes(a / "checkpoint-60/optimizer.safetensors", b / "checkpoint-60/optimizer.safetensors"));
  auto la = train_lines(a), lb = train_lines(b);
  ASSERT_EQ(lb.size(), 60u);
  for (int64_t s = 1; s <= 60; ++s) EXPECT_EQ(la[s]["loss"].get<double>(), lb[s]["loss"].get<double>()) << s;
}

}  // namespace
}  // namespace engine::e2e
