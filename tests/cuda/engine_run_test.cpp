// The built `engine` on CUDA end to end: recipes/tiny_lora.toml with train.device = "cuda" halves its loss
// like the CPU run does, and a run killed with SIGKILL and resumed with --resume auto gives bitwise the same
// losses, adapter and optimizer state as a straight run (the CUDA kernels are deterministic: no float
// atomics).
#include <csignal>

#include "tests/cuda/cuda_test_support.hpp"
#include "tests/e2e/e2e_support.hpp"

namespace engine::e2e {
namespace {

std::vector<std::string> cuda_args(const fs::path& model, const fs::path& out, const std::string& steps) {
  return {"run",   (source_dir() / "recipes/tiny_lora.toml").string(),
          "--set", "model.path=" + model.string(),
          "--set", "train.output_dir=" + out.string(),
          "--set", "train.device=cuda",
          "--set", "train.max_steps=" + steps,
          "--set", "checkpoint.save_every=5",
          "--set", "checkpoint.keep_last=0",
          "--set", "train.eval_every=0",
          "--set", "log.every=1",
          "--set", "peft.lora_dropout=0.1"};
}

TEST(CudaE2e, TinyLoraLossHalves) {
  SKIP_WITHOUT_GPU();
  const fs::path dir = fresh_dir("cuda_tiny_lora");
  ASSERT_EQ(run_engine(cuda_args(dir / "model", dir / "out", "200"), dir / "log.txt"), 0)
      << read_file(dir / "log.txt");
  auto lines = train_lines(dir / "out");
  ASSERT_GE(lines.size(), 20u);
  const double first = lines.begin()->second["loss"].get<double>();
  double last10 = 0;
  int n = 0;
  for (auto it = lines.rbegin(); it != lines.rend() && n < 10; ++it, ++n)
    last10 += it->second["loss"].get<double>();
  last10 /= n;
  std::cout << "tiny_lora on CUDA: loss " << first << " -> " << last10 << " (mean of the last 10)\n";
  EXPECT_LE(last10, 0.5 * first) << "the loss did not halve on CUDA";
  for (const auto& [step, j] : lines) {
    EXPECT_GT(j["mem_bytes"].get<double>(), 0) << step;
    EXPECT_GE(j["mem_reserved_bytes"].get<double>(), j["mem_bytes"].get<double>()) << step;
  }
}

TEST(CudaE2e, KillNineThenResumeIsBitwiseIdentical) {
  SKIP_WITHOUT_GPU();
  const fs::path dir = fresh_dir("cuda_resume");
  const fs::path model = dir / "model", a = dir / "straight", b = dir / "killed";
  ASSERT_EQ(run_engine(cuda_args(model, a, "60"), dir / "a.log"), 0) << read_file(dir / "a.log");
  pid_t pid = spawn(cuda_args(model, b, "60"), dir / "b.log");
  const bool reached =
      wait_until([&] { return train_lines(b).size() >= 13 && fs::exists(b / "checkpoint-10"); }, 120);
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  ASSERT_TRUE(reached) << read_file(dir / "b.log");
  ASSERT_FALSE(fs::exists(b / "checkpoint-60")) << "the run finished before it could be killed";
  ASSERT_EQ(run_engine(cuda_args(model, b, "60"), dir / "b.log"), 0) << read_file(dir / "b.log");
  EXPECT_TRUE(same_bytes(a / "checkpoint-60/adapter_model.safetensors",
                         b / "checkpoint-60/adapter_model.safetensors"));
  EXPECT_TRUE(
      same_bytes(a / "checkpoint-60/optimizer.safetensors", b / "checkpoint-60/optimizer.safetensors"));
  auto la = train_lines(a), lb = train_lines(b);
  ASSERT_EQ(la.size(), 60u);
  ASSERT_EQ(lb.size(), 60u);
  for (int64_t s = 1; s <= 60; ++s)
    EXPECT_EQ(la[s]["loss"].get<double>(), lb[s]["loss"].get<double>()) << "step " << s;
}

}  // namespace
}  // namespace engine::e2e

namespace engine::e2e {
namespace {

// recipes/tiny_qlora.toml on CUDA (nf4 quantized on the GPU, the plugin's dequantize kernel in forward and
// backward, adamw8bit's kernel): trains, and its eval loss after 200 steps is within 10% of the CPU run's.
TEST(CudaE2e, TinyQloraTrainsLikeTheCpu) {
  SKIP_WITHOUT_GPU();
  const fs::path dir = fresh_dir("cuda_tiny_qlora");
  auto args = [&](const std::string& device, const fs::path& out) {
    return std::vector<std::string>{"run", (source_dir() / "recipes/tiny_qlora.toml").string(), "--set",
                                    "model.path=" + (dir / "model").string(), "--set",
                                    "train.output_dir=" + out.string(), "--set", "train.device=" + device,
                                    "--set", "checkpoint.save_every=0"};
  };
  ASSERT_EQ(run_engine(args("cuda", dir / "cuda"), dir / "cuda.log"), 0) << read_file(dir / "cuda.log");
  ASSERT_EQ(run_engine(args("cpu", dir / "cpu"), dir / "cpu.log"), 0) << read_file(dir / "cpu.log");
  auto eval = [](const fs::path& out) {
    for (const auto& j : read_metrics(out))
      if (j.contains("eval_loss") && j["step"].get<int64_t>() == 200) return j["eval_loss"].get<double>();
    return -1.0;
  };
  const double gpu = eval(dir / "cuda"), cpu = eval(dir / "cpu");
  std::cout << "tiny_qlora eval loss at step 200: cuda " << gpu << ", cpu " << cpu << "\n";
  ASSERT_GT(gpu, 0.0);
  EXPECT_NEAR(gpu / cpu, 1.0, 0.10);
}

}  // namespace
}  // namespace engine::e2e
