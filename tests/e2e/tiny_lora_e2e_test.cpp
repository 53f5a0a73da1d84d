// recipes/tiny_lora.toml end to end: creates its model, trains on CPU well within 2 minutes, the loss falls
// by at least half (mean of the last 10 steps against step 1), it writes a PEFT adapter and ends by saying
// where it is and how to try it.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <sstream>

#include "tests/e2e/e2e_support.hpp"

namespace engine::e2e {
namespace {

TEST(TinyLora, LossHalvesWithinTwoMinutes) {
  const fs::path dir = fresh_dir("tiny_lora");
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = run_engine({"run", (source_dir() / "recipes/tiny_lora.toml").string(), "--set",
                             "train.output_dir=" + (dir / "out").string(), "--set",
                             "model.path=" + (dir / "model").string(), "--set", "log.every=1"},
                            dir / "log.txt");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string log = read_file(dir / "log.txt");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_LT(seconds, 120.0);

  auto lines = train_lines(dir / "out");
  ASSERT_GE(lines.size(), 20u) << log;
  const double first = lines.begin()->second["loss"].get<double>();
  double last10 = 0;
  int n = 0;
  for (auto it = lines.rbegin(); it != lines.rend() && n < 10; ++it, ++n)
    last10 += it->second["loss"].get<double>();
  last10 /= n;
  std::cout << "tiny_lora: " << lines.size() << " steps in " << seconds << " s, loss " << first << " -> "
            << last10 << " (mean of the last 10)\n";
  EXPECT_LE(last10, 0.5 * first) << "the loss did not halve";
  for (const auto& [step, j] : lines) {
    for (const char* k : {"lr", "grad_norm", "tokens", "tokens_per_s", "mem_bytes"})
      EXPECT_TRUE(j.contains(k)) << k;
  }

  const fs::path ckpt = dir / "out" / "checkpoint-200";
  EXPECT_TRUE(fs::exists(ckpt / "adapter_model.safetensors")) << log;
  EXPECT_TRUE(fs::exists(ckpt / "adapter_config.json"));
  EXPECT_EQ(read_file(dir / "out" / "latest"), "checkpoint-200\n");
  EXPECT_NE(log.find("adapter saved in " + ckpt.string()), std::string::npos) << log;
  EXPECT_NE(log.find("engine generate --model " + (dir / "model").string() + " --adapter " + ckpt.string()),
            std::string::npos)
      << log;
  const bool has_eval = log.find("eval at step 200") != std::string::npos;
  EXPECT_TRUE(has_eval) << log;

  // engine plot draws the curves; engine plan prints the memory table for the same recipe
  ASSERT_EQ(
      run_engine({"plot", (dir / "out").string(), "--out", (dir / "loss.svg").string()}, dir / "plot.log"), 0)
      << read_file(dir / "plot.log");
  EXPECT_NE(read_file(dir / "loss.svg").find("<polyline"), std::string::npos);
  // the learning-rate label ends at the image's right edge instead of running past it
  EXPECT_NE(read_file(dir / "loss.svg").find("x=\"836\" y=\"24\" text-anchor=\"end\" fill=\"#ff7f0e\">lr "),
            std::string::npos)
      << read_file(dir / "loss.svg");
  ASSERT_EQ(run_engine({"plan", (source_dir() / "recipes/tiny_lora.toml").string(), "--set",
                        "model.path=" + (dir / "model").string(), "--set",
                        "train.output_dir=" + (dir / "out").string()},
                       dir / "plan.log"),
            0)
      << read_file(dir / "plan.log");
  const std::string plan = read_file(dir / "plan.log");
  for (const char* part :
       {"base weights", "adapters", "gradients", "optimizer state", "activations", "total"}) {
    EXPECT_NE(plan.find(part), std::string::npos) << plan;
  }
}

// engine plan --device-memory: the plan for a GPU that is not on this machine (bf16 compute), from the 7B
// config alone: 14.19 GiB of bf16 base weights fit a 24 GiB card (exit 0) and the run does not fit 16 GiB (exit 1);
// a recipe whose dataset is absent is planned too.
TEST(TinyLora, PlanForAGpuThatIsNotHere) {
  const fs::path dir = fresh_dir("plan_device_memory");
  const std::vector<std::string> base = {"plan", (source_dir() / "recipes/qwen7b_lora.toml").string(), "--set",
                                         "model.path=" + (source_dir() / "tests/data/models/qwen2.5-7b-instruct").string(),
                                         "--set", "train.device=cuda", "--device-memory"};
  std::vector<std::string> fits = base, tight = base;
  fits.push_back("24");
  tight.push_back("16");
  ASSERT_EQ(run_engine(fits, dir / "fits.log"), 0) << read_file(dir / "fits.log");
  const std::string plan = read_file(dir / "fits.log");
  EXPECT_NE(plan.find("memory plan for a CUDA GPU of 24 GiB (--device-memory)"), std::string::npos) << plan;
  EXPECT_NE(plan.find("14.19 GiB   7615616512 frozen elements, 2 B each"), std::string::npos) << plan;
  EXPECT_NE(plan.find("of 24.00 GiB"), std::string::npos) << plan;
  EXPECT_EQ(run_engine(tight, dir / "tight.log"), 1) << read_file(dir / "tight.log");
  EXPECT_NE(read_file(dir / "tight.log").find("of 16.00 GiB"), std::string::npos) << read_file(dir / "tight.log");
  // The QLoRA recipe's dataset is not in the checkout: the plan reads no data, so it plans anyway.
  ASSERT_FALSE(fs::exists(source_dir() / "data/alpaca/alpaca_data_cleaned.json"));
  ASSERT_EQ(run_engine({"plan", (source_dir() / "recipes/qwen7b_qlora.toml").string(), "--set",
                        "model.path=" + (source_dir() / "tests/data/models/qwen2.5-7b-instruct").string(), "--set",
                        "train.device=cuda", "--device-memory", "24"},
                       dir / "qlora.log"),
            0)
      << read_file(dir / "qlora.log");
  EXPECT_NE(read_file(dir / "qlora.log").find("quantized projection elements"), std::string::npos)
      << read_file(dir / "qlora.log");
  // The long-context QLoRA recipe: its options load together and the plan counts the kept attention results.
  ASSERT_EQ(run_engine({"plan", (source_dir() / "recipes/qwen7b_qlora_32k.toml").string(), "--set",
                        "model.path=" + (source_dir() / "tests/data/models/qwen2.5-7b-instruct").string(),
                        "--device-memory", "24"},
                       dir / "qlora_32k.log"),
            0)
      << read_file(dir / "qlora_32k.log");
  const std::string long_plan = read_file(dir / "qlora_32k.log");
  EXPECT_NE(long_plan.find("(offloaded to host memory, 2 on the device) + the attention outputs and statistics of 1 "
                           "more + one block replayed, 32768 tokens"),
            std::string::npos)
      << long_plan;
}

// `engine run` without a recipe, outside a checkout: the embedded tiny_lora recipe and dataset are written to
// ./engine-tiny-lora/ and trained.
TEST(TinyLora, EmbeddedDefaultRunsAnywhere) {
  const fs::path dir = fresh_dir("default_recipe");
  const int rc =
      run_engine({"run", "--set", "train.max_steps=5", "--set", "train.eval_every=0"}, dir / "log.txt", dir);
  const std::string log = read_file(dir / "log.txt");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("no recipe given, running the default"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(dir / "engine-tiny-lora/recipes/tiny_lora.toml"));
  EXPECT_TRUE(
      same_bytes(dir / "engine-tiny-lora/data/tiny/train.jsonl", source_dir() / "data/tiny/train.jsonl"));
  EXPECT_TRUE(fs::exists(dir / "engine-tiny-lora/output/tiny_lora/checkpoint-5/adapter_model.safetensors"))
      << log;
}

// ENGINE_PROFILE_MEMORY=1: the report names the ops at which the allocator's per-step peak rose, highest first;
// the step's peak itself (the progress line's "mem") is reached inside one of them.
TEST(TinyLora, MemoryProfileNamesTheOpsThatRaiseTheStepPeak) {
  const fs::path dir = fresh_dir("memory_profile");
  ::setenv("ENGINE_PROFILE_MEMORY", "1", 1);
  const int rc = run_engine({"run", (source_dir() / "recipes/tiny_lora.toml").string(), "--set",
                             "model.path=" + (dir / "model").string(), "--set",
                             "train.output_dir=" + (dir / "out").string(), "--set", "train.max_steps=5", "--set",
                             "train.eval_every=0", "--set", "train.activation_checkpointing=true"},
                            dir / "log.txt");
  ::unsetenv("ENGINE_PROFILE_MEMORY");
  const std::string log = read_file(dir / "log.txt");
  ASSERT_EQ(rc, 0) << log;
  const size_t at = log.find("memory profile over 4 steps");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string table = log.substr(at);
  EXPECT_NE(table.find("/ replay"), std::string::npos) << table;  // checkpointed blocks recompute
  EXPECT_EQ(log.find("op profile over"), std::string::npos) << log;  // no timing asked for
  // The first row's peak is the steps' highest: the progress lines' "mem" of the profiled steps.
  const size_t row = table.find('\n', table.find("times/step")) + 1;
  std::istringstream line(table.substr(row, table.find('\n', row) - row));
  std::string op, slash, phase;
  double first = 0;
  line >> op >> slash >> phase >> first;
  EXPECT_EQ(slash, "/") << table;
  EXPECT_GT(first, 0.5) << table;  // MiB: tiny_lora's step peaks at about 3 MiB
}

// In a checkpointed block nothing is saved, so its forward must not hold what its replay keeps for backward:
// the replay keeps SwiGLU's gate and up (and its output, for down_proj's LoRA A); the forward lets go of gate and up
// once SwiGLU has run (the decoder's locals die at their last use). At 8,192 tokens of tiny_lora (intermediate 176)
// gate and up are 11.0 MiB together: the forward's highest point stays at least that far below the replay's (it
// was 7.2 MiB below when the locals lived to the end of the block).
TEST(TinyLora, ACheckpointedForwardHoldsLessThanItsReplay) {
  const fs::path dir = fresh_dir("forward_locals");
  ::setenv("ENGINE_PROFILE_MEMORY", "1", 1);
  const int rc = run_engine({"run", (source_dir() / "recipes/tiny_lora.toml").string(), "--set",
                             "model.path=" + (dir / "model").string(), "--set",
                             "train.output_dir=" + (dir / "out").string(), "--set", "train.max_steps=3", "--set",
                             "train.eval_every=0", "--set", "train.activation_checkpointing=true", "--set",
                             "train.micro_batch_size=16", "--set", "data.max_seq_len=512"},
                            dir / "log.txt");
  ::unsetenv("ENGINE_PROFILE_MEMORY");
  const std::string log = read_file(dir / "log.txt");
  ASSERT_EQ(rc, 0) << log;
  const size_t at = log.find("memory profile over");
  ASSERT_NE(at, std::string::npos) << log;
  std::istringstream table(log.substr(log.find('\n', log.find("times/step", at)) + 1));
  double forward = 0, replay = 0;
  for (std::string line; std::getline(table, line) && !line.empty();) {
    std::istringstream row(line);
    std::string op, slash, phase;
    double peak = 0;
    if (!(row >> op >> slash >> phase >> peak)) break;
    if (phase == "forward") forward = std::max(forward, peak);
    if (phase == "replay") replay = std::max(replay, peak);
  }
  ASSERT_GT(replay, 0) << log.substr(at);
  const double gate_up_mib = 2.0 * 176 * 8192 * 4 / (1024.0 * 1024.0);
  EXPECT_GE(replay - forward, gate_up_mib) << log.substr(at);
}

}  // namespace
}  // namespace engine::e2e
