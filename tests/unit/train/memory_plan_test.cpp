// Arithmetic of the memory plan on known sizes. (tests/e2e/plan_peak_test checks it against a real run.)
#include "engine/train/memory_plan.hpp"
#include "engine/train/plan_inputs.hpp"

#include <gtest/gtest.h>

#include <string>

#include "engine/core/error.hpp"

using namespace engine::train;

namespace {
PlanInputs qwen7b() {
  PlanInputs in;
  in.model = {28, 152064, 3584, 18944, 28, 4, 128, false, true};
  in.weight_dtype = ENG_BF16;
  in.compute_dtype = ENG_BF16;
  in.micro_batch_size = 1;
  in.seq_len = 2048;
  in.activation_checkpointing = true;
  in.cuda = true;
  in.device_memory = int64_t(80) << 30;
  return in;
}
int64_t component(const MemoryPlan& p, const std::string& name) {
  for (const auto& c : p.components) {
    if (c.name == name) return c.bytes;
  }
  ADD_FAILURE() << "no component " << name;
  return -1;
}
}  // namespace

TEST(MemoryPlan, Qwen7bLoraCountsMatchTheArchitecture) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;
  in.lora_targets = {"all-linear"};
  MemoryPlan p = make_memory_plan(in);
  // Qwen2.5-7B has 7,615,616,512 parameters (HF model card: 7.61B)
  EXPECT_EQ(p.base_elements, 7615616512);
  EXPECT_EQ(component(p, "base weights"), 7615616512 * 2);
  // PEFT reports 40,370,176 trainable parameters for r=16 all-linear on Qwen2.5-7B
  EXPECT_EQ(p.trainable_elements, 40370176);
  EXPECT_EQ(component(p, "gradients"), 40370176 * 4);
  EXPECT_EQ(component(p, "optimizer state"), 40370176 * 8);
  EXPECT_EQ(component(p, "master weights"), 0);
  EXPECT_TRUE(p.fits());
  EXPECT_LT(p.total_bytes, int64_t(30) << 30);
}

TEST(MemoryPlan, FullFineTuningNeedsMastersGradientsAndStateForEverything) {
  PlanInputs in = qwen7b();
  MemoryPlan p = make_memory_plan(in);
  EXPECT_EQ(p.trainable_elements, p.base_elements);
  EXPECT_EQ(component(p, "master weights"), p.base_elements * 4);
  EXPECT_EQ(component(p, "base weights"), 0);  // the fp32 masters are the only copy
  EXPECT_EQ(component(p, "adapters"), 0);
  EXPECT_FALSE(p.fits());  // 7.6B * (4 + 4 + 8) bytes > 80 GiB
  EXPECT_NE(format_memory_plan(p, "cuda:0").find("DOES NOT FIT"), std::string::npos);
}

// What a block holds per token beyond its saved tensors, and which inputs its projections save, by what LoRA
// targets (Qwen2.5-7B: C = 3,584, I = 18,944, q = 3,584, kv = 512, 28 heads, r = 16).
TEST(MemoryPlan, FrozenProjectionsSaveNoInputAndPendingSummandsFollowTheTargets) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;
  in.lora_targets = {"all-linear"};
  // up's base and adapter outputs while up is made, SwiGLU's output not yet there: I
  EXPECT_EQ(block_pending_elements_per_token(in), 18944);
  // norms' inputs and 1/rms, both norms' outputs, roped q/k and v, attention output and statistics, gate, up,
  // SwiGLU's output, x A^T of the seven targets
  EXPECT_EQ(activation_elements_per_token(in),
            2 * (3584 + 1) + 2 * 3584 + (3584 + 2 * 512) + (3584 + 28) + 3 * 18944 + 7 * 16);
  in.lora_targets = {"q_proj", "v_proj"};
  EXPECT_EQ(block_pending_elements_per_token(in), 2 * 3584);  // a projection's output and the residual sum
  // the MLP's input (the second norm's output) and down_proj's (SwiGLU's output) are saved by nothing
  EXPECT_EQ(activation_elements_per_token(in),
            2 * (3584 + 1) + 3584 + (3584 + 2 * 512) + (3584 + 28) + 2 * 18944 + 2 * 16);
  in.lora_targets = {"down_proj"};
  EXPECT_EQ(block_pending_elements_per_token(in), 3 * 3584);  // down's two summands and their sum
  in.lora_rank = 0;  // full fine-tuning: every projection saves its input
  EXPECT_EQ(activation_elements_per_token(in),
            2 * (3584 + 1) + 2 * 3584 + (3584 + 2 * 512) + (3584 + 28) + 3 * 18944);
}

TEST(MemoryPlan, CheckpointingShrinksActivations) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;
  in.lora_targets = {"q_proj", "v_proj"};
  const int64_t with = component(make_memory_plan(in), "activations");
  in.activation_checkpointing = false;
  const int64_t without = component(make_memory_plan(in), "activations");
  EXPECT_GT(without, 5 * with);
}

TEST(MemoryPlan, SelectiveCheckpointingLiesBetweenNoneAndAllAndAutoPicksTheFewestThatFit) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;
  in.lora_targets = {"all-linear"};
  auto act = [&](bool on, int64_t blocks) {
    in.activation_checkpointing = on;
    in.checkpoint_blocks = blocks;
    return component(make_memory_plan(in), "activations");
  };
  const int64_t all = act(true, -1), none = act(false, -1);
  EXPECT_EQ(act(true, 28), all);
  EXPECT_EQ(act(true, 0), none);
  int64_t previous = none;
  for (int64_t n : {4, 10, 20}) {
    const int64_t a = act(true, n);
    EXPECT_LT(a, previous) << n;
    EXPECT_GT(a, all) << n;
    previous = a;
  }
  // Recomputing the last block saves nothing: it would hold its input and, replayed at once, all its outputs,
  // more than the tensors it saves when it is not checkpointed.
  EXPECT_LT(act(true, 27), all);
  // auto: the fewest blocks whose plan fits the budget, every block when only that fits, -1 when nothing does.
  in.activation_checkpointing = true;
  in.checkpoint_blocks = 12;
  const int64_t budget = make_memory_plan(in).total_bytes;
  const int64_t n = fewest_checkpoint_blocks(in, budget);
  EXPECT_LE(n, 12);
  in.checkpoint_blocks = n;
  EXPECT_LE(make_memory_plan(in).total_bytes, budget);
  if (n > 0) {
    in.checkpoint_blocks = n - 1;
    EXPECT_GT(make_memory_plan(in).total_bytes, budget);
  }
  in.checkpoint_blocks = -1;
  const int64_t tight = make_memory_plan(in).total_bytes;  // every block recomputed just fits
  const int64_t m = fewest_checkpoint_blocks(in, tight);
  ASSERT_GT(m, 20);
  in.checkpoint_blocks = m;
  EXPECT_LE(make_memory_plan(in).total_bytes, tight);
  EXPECT_EQ(fewest_checkpoint_blocks(in, 1 << 20), -1);
}

TEST(MemoryPlan, OffloadKeepsTwoCheckpointedBlockInputsOnTheDevice) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;
  in.lora_targets = {"all-linear"};
  in.activation_checkpointing = true;
  in.checkpoint_blocks = -1;
  const int64_t kept = component(make_memory_plan(in), "activations");
  in.offload_activations = true;
  const int64_t off = component(make_memory_plan(in), "activations");
  const int64_t block_input = int64_t(in.model.hidden_size) * in.micro_batch_size * in.seq_len * 2;  // bf16
  EXPECT_EQ(kept - off, (in.model.n_layers - 2) * block_input);
  // Selective: only the checkpointed blocks' inputs move; auto needs no more blocks than without offload.
  in.checkpoint_blocks = 10;
  const int64_t sel_off = component(make_memory_plan(in), "activations");
  in.offload_activations = false;
  EXPECT_EQ(component(make_memory_plan(in), "activations") - sel_off, 8 * block_input);
  in.checkpoint_blocks = 12;
  const int64_t budget = make_memory_plan(in).total_bytes;
  const int64_t n_kept = fewest_checkpoint_blocks(in, budget);
  in.offload_activations = true;
  EXPECT_LE(fewest_checkpoint_blocks(in, budget), n_kept);
}

// train.keep_attention: each checkpointed block's attention output and statistics stay with its input; the
// replayed block takes its own (part of its height already), so the others add (with offload the one
// prefetched), and "auto" may need more blocks' room.
TEST(MemoryPlan, KeptAttentionStaysWithTheCheckpointedBlockInputs) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;
  in.lora_targets = {"all-linear"};
  in.activation_checkpointing = true;
  in.checkpoint_blocks = -1;
  const int64_t plain = component(make_memory_plan(in), "activations");
  in.keep_attention = true;
  const int64_t kept = component(make_memory_plan(in), "activations");
  const int64_t tokens = in.micro_batch_size * in.seq_len;
  const int64_t memo = (int64_t(in.model.n_heads) * in.model.head_dim + in.model.n_heads) * tokens * 2;  // bf16
  EXPECT_EQ(kept - plain, (in.model.n_layers - 1) * memo);
  in.offload_activations = true;
  const int64_t off = component(make_memory_plan(in), "activations");
  in.keep_attention = false;
  EXPECT_EQ(off - component(make_memory_plan(in), "activations"), memo);
  in.checkpoint_blocks = 0;  // nothing checkpointed: nothing memoized
  in.keep_attention = true;
  in.offload_activations = false;
  const int64_t none = component(make_memory_plan(in), "activations");
  in.keep_attention = false;
  EXPECT_EQ(none, component(make_memory_plan(in), "activations"));
}

// Kept-block offload: N of the kept blocks hold their activations in host memory; while fewer than half of the
// kept blocks are offloaded the device holds only the others' at once, and "auto" recomputes fewer blocks.
TEST(MemoryPlan, OffloadedKeptBlocksLeaveTheDevice) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;
  in.lora_targets = {"all-linear"};
  in.micro_batch_size = 4;
  in.recompute_cheap_ops = true;
  in.checkpoint_blocks = 4;  // 24 kept
  const MemoryPlan kept = make_memory_plan(in);
  in.offload_kept_blocks = 10;
  const MemoryPlan off = make_memory_plan(in);
  in.checkpoint_blocks = 14;  // 14 kept: the same blocks on the device, 10 more checkpointed blocks' inputs
  in.offload_kept_blocks = 0;
  const MemoryPlan fewer = make_memory_plan(in);
  const int64_t block_input = int64_t(in.model.hidden_size) * in.micro_batch_size * in.seq_len * 2;  // bf16
  EXPECT_EQ(component(fewer, "activations") - component(off, "activations"), 10 * block_input);
  EXPECT_LT(component(off, "activations"), component(kept, "activations"));
  for (const auto& c : off.components)
    if (c.name == "activations") {
      EXPECT_NE(c.detail.find("10 of them in host memory"), std::string::npos) << c.detail;
    }
  // Offloading more than half of the kept blocks: the first ones are still on the device while the next go out.
  in.checkpoint_blocks = 0;
  in.offload_kept_blocks = 28;
  const int64_t all_off = component(make_memory_plan(in), "activations");
  in.offload_kept_blocks = 14;
  EXPECT_EQ(all_off, component(make_memory_plan(in), "activations"));
  in.offload_kept_blocks = 0;
  const int64_t budget = fewer.total_bytes;
  in.checkpoint_blocks = 4;
  const int64_t n_plain = fewest_checkpoint_blocks(in, budget);
  in.offload_kept_blocks = 10;
  EXPECT_LT(fewest_checkpoint_blocks(in, budget), n_plain);
}

// "auto" offloads no more kept blocks than the fewest recomputed blocks need: with a whole H200 every block fits
// on the device and none is offloaded; under 32.6 GiB at micro-batch 4 all 11 asked for are needed, and 12 asked
// for are cut to those 11.
TEST(MemoryPlan, AutoOffloadsNoMoreKeptBlocksThanThePlanNeeds) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;
  in.lora_targets = {"all-linear"};
  in.micro_batch_size = 4;
  in.recompute_cheap_ops = true;
  in.offload_activations = true;
  in.offload_kept_blocks = 11;
  in.device_memory = int64_t(141) << 30;
  in.checkpoint_blocks = auto_checkpoint_blocks(in);
  EXPECT_EQ(in.checkpoint_blocks, 0);
  EXPECT_EQ(auto_offload_kept_blocks(in), 0);
  in.device_memory = static_cast<int64_t>(32.6 * double(int64_t(1) << 30));
  in.checkpoint_blocks = auto_checkpoint_blocks(in);
  EXPECT_EQ(in.checkpoint_blocks, 0);
  EXPECT_EQ(auto_offload_kept_blocks(in), 11);
  in.offload_kept_blocks = 12;
  EXPECT_EQ(auto_checkpoint_blocks(in), 0);
  EXPECT_EQ(auto_offload_kept_blocks(in), 11);
}

// Where no plan fits the budget, "auto" still recomputes no block that costs nothing to keep: the last block's
// activations are the height a replayed block has at backward's start, so 27 of 28 blocks recompute at the
// least memory (with offloaded inputs; without, fewer inputs kept make 27 less than 28).
TEST(MemoryPlan, AutoKeepsTheLastBlockWhereNothingFits) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;
  in.lora_targets = {"all-linear"};
  in.micro_batch_size = 4;
  in.offload_activations = true;
  in.device_memory = static_cast<int64_t>(17.28 * double(int64_t(1) << 30));
  in.checkpoint_blocks = -1;
  const int64_t all = make_memory_plan(in).total_bytes;
  ASSERT_GT(all, static_cast<int64_t>(0.92 * double(in.device_memory))) << "the case needs a budget nothing fits";
  const int64_t n = auto_checkpoint_blocks(in);
  EXPECT_EQ(n, 27);
  in.checkpoint_blocks = n;
  EXPECT_EQ(make_memory_plan(in).total_bytes, all);
  in.offload_activations = false;
  in.checkpoint_blocks = -1;
  const int64_t all_kept_inputs = make_memory_plan(in).total_bytes;
  const int64_t m = auto_checkpoint_blocks(in);
  ASSERT_GE(m, 0);
  EXPECT_LT(m, 28);
  in.checkpoint_blocks = m;
  EXPECT_LE(make_memory_plan(in).total_bytes, all_kept_inputs);
}

TEST(MemoryPlan, AnUnknownDtypeIsAnErrorNotAGuess) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;  // frozen base weights, counted in their storage dtype
  in.lora_targets = {"all-linear"};
  in.weight_dtype = static_cast<eng_dtype>(99);  // no eng_dtype has this value
  try {
    make_memory_plan(in);
    FAIL() << "an unknown weight dtype was accepted";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown dtype code 99"), std::string::npos) << e.what();
  }
  in.weight_dtype = ENG_I64;  // listed, 8 bytes (the plan used to guess 4 for anything it did not list)
  EXPECT_EQ(component(make_memory_plan(in), "base weights"), 7615616512 * 8);
}

TEST(MemoryPlan, Zero3KeepsOneWorldthPerRankPlusTheGatheredBlock) {
  PlanInputs in = qwen7b();
  const MemoryPlan one = make_memory_plan(in);
  in.strategy = "zero3";
  in.world_size = 8;
  const MemoryPlan eight = make_memory_plan(in);
  for (const char* name : {"master weights", "gradients", "optimizer state"})
    EXPECT_EQ(component(eight, name), (component(one, name) + 7) / 8) << name;
  // one block (7 linears, 2 norms, the q/k/v biases) and the embedding, final norm and lm_head whole, fp32,
  // with their fp32 gradients
  const int64_t block = 3584LL * 3584 * 2 + 512LL * 3584 * 2 + 18944LL * 3584 * 3 + 2 * 3584 + (3584 + 2 * 512);
  const int64_t outside = 2 * 152064LL * 3584 + 3584;
  EXPECT_EQ(component(eight, "gathered"), (block + outside) * 8);
  EXPECT_TRUE(eight.fits()) << "7.6B full fine-tuning over 8 ranks: about 16 bytes x 7.6B / 8 + one block";
  EXPECT_NE(format_memory_plan(eight, "cuda:0").find("1/8 per rank (zero3)"), std::string::npos);
  // fsdp keeps the same per rank (its flat buffers pad once per block instead of once per parameter).
  in.strategy = "fsdp";
  const MemoryPlan fsdp = make_memory_plan(in);
  EXPECT_EQ(fsdp.total_bytes, eight.total_bytes);
  EXPECT_NE(format_memory_plan(fsdp, "cuda:0").find("1/8 per rank (fsdp)"), std::string::npos);
  // zero2 divides the optimizer state only; ddp nothing.
  in.strategy = "zero2";
  const MemoryPlan z2 = make_memory_plan(in);
  EXPECT_EQ(component(z2, "optimizer state"), (component(one, "optimizer state") + 7) / 8);
  EXPECT_EQ(component(z2, "gradients"), component(one, "gradients"));
  in.strategy = "ddp";
  EXPECT_EQ(make_memory_plan(in).total_bytes, one.total_bytes);
}

// tp: every block projection, the embedding and lm_head are 1/world per rank (the norms whole); a LoRA adapter
// splits its matrix on the split side (A of o/down, B of q/k/v/gate/up); the heads' and the MLP's activations
// are 1/world too.
// pp: the busiest stage's plan: ceil(28 / 4) = 7 blocks and one vocabulary matrix (Qwen2.5-7B's embedding and
// lm_head are separate: the first stage keeps one, the last the other); 1F1B keeps min(stages, micro-batches)
// micro-batches' activations in flight on the first stage, GPipe all of them.
TEST(MemoryPlan, PipelineParallelPlansTheBusiestStage) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;
  in.lora_targets = {"all-linear"};
  in.activation_checkpointing = true;
  in.grad_accum = 8;
  const MemoryPlan one = make_memory_plan(in);
  in.strategy = "pp";
  in.world_size = 4;
  const MemoryPlan four = make_memory_plan(in);
  const int64_t block = 3584 * (3584 + 512 + 512 + 3584 + 3 * 18944) + 2 * 3584 + (3584 + 2 * 512);
  EXPECT_EQ(four.base_elements, 7 * block + 3584 + int64_t(152064) * 3584);
  EXPECT_EQ(four.trainable_elements, one.trainable_elements / 4);
  PlanInputs single_stage = in;
  single_stage.strategy.clear();
  single_stage.world_size = 1;
  single_stage.model.n_layers = 7;
  single_stage.model.tie_word_embeddings = true;
  EXPECT_EQ(component(four, "activations"), 4 * component(make_memory_plan(single_stage), "activations"));
  EXPECT_NE(format_memory_plan(four, "cuda:0").find("x 4 micro-batches in flight (1f1b; an upper bound"), std::string::npos);
  in.pp_gpipe = true;
  EXPECT_EQ(component(make_memory_plan(in), "activations"), 8 * component(make_memory_plan(single_stage), "activations"));
  EXPECT_LT(four.total_bytes, one.total_bytes);
  // One stage (pp on one rank) keeps the whole model: the plain plan.
  in.world_size = 1;
  in.pp_gpipe = false;
  EXPECT_EQ(make_memory_plan(in).total_bytes, one.total_bytes);
}

TEST(MemoryPlan, TensorParallelSplitsProjectionsVocabularyAndAdapters) {
  PlanInputs in = qwen7b();
  in.lora_rank = 16;
  in.lora_targets = {"all-linear"};
  const MemoryPlan one = make_memory_plan(in);
  in.strategy = "tp";
  in.world_size = 2;
  const MemoryPlan two = make_memory_plan(in);
  // Only the norms (28 * 2 * 3584 + 3584 elements) stay whole; the q/k/v biases split with their weights.
  const int64_t whole = 28 * 2 * 3584 + 3584;
  EXPECT_EQ(two.base_elements, (7615616512 - whole) / 2 + whole);
  EXPECT_EQ(component(two, "base weights"), two.base_elements * 2);
  // Per layer: q, k, v, gate, up keep r * (in + out/2); o, down r * (in/2 + out).
  const int64_t per_layer = 16 * ((3584 + 3584 / 2) + 2 * (3584 + 512 / 2) + 2 * (3584 + 18944 / 2) +
                                  (3584 / 2 + 3584) + (18944 / 2 + 3584));
  EXPECT_EQ(two.trainable_elements, 28 * per_layer);
  EXPECT_LT(component(two, "activations"), component(one, "activations"));
  EXPECT_NE(format_memory_plan(two, "cuda:0").find("1/2 per rank, tp"), std::string::npos);
}
