// The memory plan against what the allocator measures: the tiny LoRA and full fine-tuning recipes run a few
// steps on a fresh CPU device, and the plan's total (computed from config.json and the recipe alone) must be
// within 15% of the device's peak.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "engine/cli/command.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/session/session.hpp"
#include "engine/train/data_pipeline.hpp"
#include "engine/train/plan_inputs.hpp"
#include "engine/train/trainer.hpp"
#include "tests/unit/train/train_test_support.hpp"

namespace engine::train {
namespace {

namespace fs = std::filesystem;

void expect_plan_close_to_peak(const std::vector<std::string>& extra_sets,
                               const std::string& recipe_file = "recipes/tiny_lora.toml") {
  auto reg = testing::registry();
  const fs::path out = fs::temp_directory_path() / "memory_plan_peak_test";
  fs::remove_all(out);
  // recipes/tiny_lora.toml's model (the qwen2 tiny preset), created here by the code `engine run` uses
  std::vector<std::string> sets = {"train.output_dir=" + out.string(),
                                   "model.path=" + (out / "model").string(), "train.max_steps=3",
                                   "checkpoint.save_every=0", "train.eval_every=0"};
  sets.insert(sets.end(), extra_sets.begin(), extra_sets.end());
  recipe::Recipe r = testing::load_path(*reg, testing::source_file(recipe_file), sets);
  cli::ensure_preset_model(r);

  rt::CpuDevice device(1);
  double opt_bytes = 0;
  int64_t peak = 0;
  {
    session::TrainingSession s(r, *reg, device);
    opt_bytes = s.optimizer().state_bytes_per_element();
    DataPipeline data(r);
    TrainOptions o;
    o.resume = "none";
    o.progress_out = std::fopen("/dev/null", "w");
    TrainResult res = train(s, data, o);
    std::fclose(o.progress_out);
    EXPECT_EQ(res.last_step, 3);
    peak = device.memory_stats().peak_bytes;
  }
  PlanInputs in = plan_inputs_for(r, io::read_hf_config(r.model.path).json, opt_bytes, 0.0, false, 0);
  MemoryPlan plan = make_memory_plan(in);
  std::cout << format_memory_plan(plan, "cpu") << "measured peak " << format_bytes(peak) << " (" << peak
            << " B), plan " << plan.total_bytes << " B, ratio " << double(plan.total_bytes) / double(peak)
            << "\n";
  EXPECT_GT(peak, 0);
  EXPECT_NEAR(double(plan.total_bytes) / double(peak), 1.0, 0.15);
  fs::remove_all(out);
}

TEST(MemoryPlanPeak, LoraWithinFifteenPercent) { expect_plan_close_to_peak({}); }

TEST(MemoryPlanPeak, LargerBatchWithinFifteenPercent) {
  expect_plan_close_to_peak({"train.micro_batch_size=8", "data.max_seq_len=256"});
}

TEST(MemoryPlanPeak, FullFineTuningWithinFifteenPercent) {
  expect_plan_close_to_peak({}, "recipes/tiny_full.toml");
}

TEST(MemoryPlanPeak, CheckpointedAllLinearWithinFifteenPercent) {
  expect_plan_close_to_peak(
      {"train.activation_checkpointing=true", "train.micro_batch_size=8", "data.max_seq_len=256"});
}

TEST(MemoryPlanPeak, CheckpointedWithinFifteenPercent) {
  expect_plan_close_to_peak({"train.activation_checkpointing=true",
                             R"(peft.target_modules=["q_proj", "v_proj"])", "train.micro_batch_size=8",
                             "data.max_seq_len=256"});
}

TEST(MemoryPlanPeak, KeptAttentionWithinFifteenPercent) {
  expect_plan_close_to_peak({"train.activation_checkpointing=true", "train.keep_attention=true",
                             "train.micro_batch_size=8", "data.max_seq_len=256"});
}

TEST(MemoryPlanPeak, CheapRecomputeWithinFifteenPercent) {
  expect_plan_close_to_peak({"train.recompute_cheap_ops=true", "train.micro_batch_size=8", "data.max_seq_len=256"});
}

}  // namespace
}  // namespace engine::train
