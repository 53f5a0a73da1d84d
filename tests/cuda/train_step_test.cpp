// One training step of the tiny Qwen2 fixture on CUDA against the same step on the CPU: the loss and the
// gradient of every trainable parameter, through the real session (model plugin, linear seam, PEFT, tape).
//   fp32 weights: every op computes in f32 on both devices; rel_error <= 1e-4 (errors of ~40 ops compound).
//   bf16 weights (model.dtype = "bf16"): CUDA computes in bf16 with fp32 statistics, the CPU in fp32 on the
//   same bf16 weights; loss within 1e-2 relative, gradients rel_error <= 5e-2 (bf16 activations, 8-bit
//   mantissas).
// The norm is cuda_test_support.hpp's rel_error, per parameter.
#include <map>
#include <string>
#include <vector>

#include "engine/runtime/device_select.hpp"
#include "engine/session/session.hpp"
#include "engine/train/forward_backward.hpp"
#include "tests/cuda/cuda_test_support.hpp"
#include "tests/unit/train/train_test_support.hpp"

namespace engine::train {
namespace {

data::Batch batch() {
  data::Batch b;
  b.rows = 2;
  b.seq_len = 16;
  for (int r = 0; r < 2; ++r)
    for (int t = 0; t < 16; ++t) {
      b.input_ids.push_back((r * 13 + t * 7 + 1) % 64);
      b.labels.push_back(t >= 4 ? (r * 5 + t * 3 + 2) % 64 : -100);
      b.position_ids.push_back(t % 9);  // two packed samples per row: positions restart
      b.segment_ids.push_back(t < 9 ? 1 : 2);
    }
  for (int32_t l : b.labels) b.label_tokens += l != -100;
  return b;
}

struct StepResult {
  double loss = 0;
  int64_t offloaded_bytes = 0;
  int64_t offloaded_kept_bytes = 0;
  int64_t offloaded_memo_bytes = 0;
  int64_t nodes_from_memo = 0;
  std::map<std::string, std::vector<float>> grads;
};

StepResult step_on(rt::Device& device, const std::vector<std::string>& sets, size_t offload_min_bytes = 0,
                   int64_t offload_kept_blocks = 0) {
  auto reg = testing::registry();
  recipe::Recipe r = testing::load(*reg, "train/recipes/tiny_fixture.toml", sets);
  session::TrainingSession s(r, *reg, device);
  // The fixture's block inputs are a few KB: offload them all (the default threshold is 1 MiB).
  if (offload_min_bytes > 0 && offload_kept_blocks == 0) s.host().tape().set_activation_offload(true, offload_min_bytes);
  if (offload_kept_blocks > 0) s.host().tape().set_offload_kept_blocks(offload_kept_blocks, 2, offload_min_bytes);
  const std::vector<data::Batch> micro = {batch()};
  StepResult out;
  out.loss = forward_backward(s, micro).loss;
  out.offloaded_bytes = s.host().tape().offloaded_bytes();
  out.offloaded_kept_bytes = s.host().tape().offloaded_kept_bytes();
  out.offloaded_memo_bytes = s.host().tape().offloaded_memo_bytes();
  out.nodes_from_memo = s.host().tape().last_backward_stats().nodes_from_memo;
  for (rt::Param* p : s.trainable()) {
    rt::Tensor g = s.host().params().grad(*p);
    if (g.defined()) out.grads[p->name()] = g.to_float_vector();
  }
  return out;
}

void compare(const std::vector<std::string>& sets, double loss_tol, double grad_tol) {
  std::vector<std::string> with_packing = sets;
  with_packing.push_back("data.packing=true");
  const StepResult cpu = step_on(rt::cpu_device(), with_packing);
  const StepResult gpu = step_on(rt::device_from_spec("cuda"), with_packing);
  EXPECT_NEAR(gpu.loss, cpu.loss, loss_tol * std::abs(cpu.loss));
  ASSERT_EQ(gpu.grads.size(), cpu.grads.size());
  ASSERT_FALSE(cpu.grads.empty());
  for (const auto& [name, want] : cpu.grads) {
    auto it = gpu.grads.find(name);
    ASSERT_NE(it, gpu.grads.end()) << name << " has no gradient on CUDA";
    EXPECT_LE(cuda_test::rel_error(it->second, want), grad_tol) << name;
  }
}

TEST(CudaTrainStep, FullFineTuningFp32MatchesCpu) {
  SKIP_WITHOUT_GPU();
  compare({}, 1e-5, 1e-4);
}

TEST(CudaTrainStep, LoraFp32MatchesCpu) {
  SKIP_WITHOUT_GPU();
  compare({"peft.plugin=lora", "peft.r=4", "peft.lora_alpha=8"}, 1e-5, 1e-4);
}

TEST(CudaTrainStep, FullFineTuningBf16WithinBf16Tolerance) {
  SKIP_WITHOUT_GPU();
  compare({"model.dtype=bf16", "train.dtype=bf16"}, 1e-2, 5e-2);
}

TEST(CudaTrainStep, DeterministicAcrossRuns) {
  SKIP_WITHOUT_GPU();
  const StepResult a =
      step_on(rt::device_from_spec("cuda"), {"model.dtype=bf16", "train.dtype=bf16", "data.packing=true"});
  const StepResult b =
      step_on(rt::device_from_spec("cuda"), {"model.dtype=bf16", "train.dtype=bf16", "data.packing=true"});
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.grads, b.grads)
      << "two identical CUDA steps gave different gradients (a non-deterministic kernel)";
}

TEST(CudaTrainStep, OffloadedCheckpointsGiveTheSameBitsAsCheckpointsOnTheDevice) {
  SKIP_WITHOUT_GPU();
  const std::vector<std::string> sets = {"model.dtype=bf16", "train.dtype=bf16", "data.packing=true",
                                         "peft.plugin=lora", "peft.r=4", "train.activation_checkpointing=true"};
  // The fixture's recipe trains on the CPU (train.device), where the recipe refuses the option: the tape is
  // switched on directly, as the session does for train.offload_activations on a GPU.
  const StepResult kept = step_on(rt::device_from_spec("cuda"), sets);
  const StepResult moved = step_on(rt::device_from_spec("cuda"), sets, /*offload_min_bytes=*/1);
  EXPECT_EQ(kept.offloaded_bytes, 0);
  EXPECT_GT(moved.offloaded_bytes, 0) << "nothing was offloaded";
  EXPECT_EQ(kept.loss, moved.loss);
  EXPECT_EQ(kept.grads, moved.grads) << "offloading the checkpointed blocks' inputs changed the gradients";
}

// train.keep_attention on the GPU, with the blocks' inputs and the kept attention results offloaded as the long
// context benchmarks run it: each replay takes its block's attention output and statistics back from host
// memory instead of running the attention forward again, with the same bits.
TEST(CudaTrainStep, KeptAttentionGivesTheSameBitsInBf16) {
  SKIP_WITHOUT_GPU();
  std::vector<std::string> sets = {"model.dtype=bf16", "train.dtype=bf16", "data.packing=true",
                                   "peft.plugin=lora", "peft.r=4", "train.activation_checkpointing=true"};
  const StepResult plain = step_on(rt::device_from_spec("cuda"), sets, /*offload_min_bytes=*/1);
  sets.push_back("train.keep_attention=true");
  const StepResult kept = step_on(rt::device_from_spec("cuda"), sets);
  const StepResult moved = step_on(rt::device_from_spec("cuda"), sets, /*offload_min_bytes=*/1);
  EXPECT_EQ(plain.nodes_from_memo, 0);
  EXPECT_EQ(kept.nodes_from_memo, 2) << "one attention per replayed block";
  EXPECT_EQ(kept.offloaded_memo_bytes, 0);
  EXPECT_GT(moved.offloaded_memo_bytes, 0) << "the kept attention results were not offloaded";
  EXPECT_EQ(plain.loss, kept.loss);
  EXPECT_EQ(plain.loss, moved.loss);
  EXPECT_EQ(plain.grads, kept.grads) << "keeping the attention results changed the gradients";
  EXPECT_EQ(plain.grads, moved.grads) << "offloading the kept attention results changed the gradients";
}

TEST(CudaTrainStep, CheapRecomputeGivesTheSameBitsInBf16) {
  SKIP_WITHOUT_GPU();
  std::vector<std::string> sets = {"model.dtype=bf16", "train.dtype=bf16", "data.packing=true", "peft.plugin=lora",
                                   "peft.r=4", "train.activation_checkpointing=1"};
  const StepResult kept = step_on(rt::device_from_spec("cuda"), sets);
  sets.push_back("train.recompute_cheap_ops=true");
  const StepResult cheap = step_on(rt::device_from_spec("cuda"), sets);
  EXPECT_EQ(kept.loss, cheap.loss);
  EXPECT_EQ(kept.grads, cheap.grads) << "recomputing the norms' and SwiGLU's outputs changed the gradients";
}

// Kept-block offload on the GPU: the copies out run on the copy stream behind the block's kernels, the device
// memory is given back after them, and the copies back are prefetched ahead of backward. Both blocks keep their
// activations (with cheap recompute, as the benchmarks run it) and both are offloaded; the same bits as keeping
// them on the device.
TEST(CudaTrainStep, KeptBlockOffloadGivesTheSameBitsInBf16) {
  SKIP_WITHOUT_GPU();
  for (const char* cheap : {"false", "true"}) {
    const std::vector<std::string> sets = {"model.dtype=bf16", "train.dtype=bf16", "data.packing=true",
                                           "peft.plugin=lora", "peft.r=4", "train.activation_checkpointing=false",
                                           std::string("train.recompute_cheap_ops=") + cheap};
    const StepResult kept = step_on(rt::device_from_spec("cuda"), sets);
    const StepResult moved = step_on(rt::device_from_spec("cuda"), sets, /*offload_min_bytes=*/1, /*kept=*/2);
    EXPECT_EQ(kept.offloaded_kept_bytes, 0);
    EXPECT_GT(moved.offloaded_kept_bytes, 0) << "nothing was offloaded";
    EXPECT_EQ(kept.loss, moved.loss) << "cheap recompute " << cheap;
    EXPECT_EQ(kept.grads, moved.grads) << "offloading the kept blocks' activations changed the gradients (cheap "
                                          "recompute " << cheap << ")";
  }
}

}  // namespace
}  // namespace engine::train
