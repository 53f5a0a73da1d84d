// Pipeline parallelism (plugins/pp) with several processes on the CPU (Gloo), through the `engine` binary:
//   - tiny_lora and tiny_full at pp = 2 with 4 micro-batches per step (grad_accum 4, 1F1B) give the per-step
//     losses of the plain single-process run of the same batches (relative difference below 1e-5 over 20
//     steps) and its final weights; each stage keeps about half of the parameters, gradients and state;
//   - four stages of a 4-block model (a stage in the middle, the tied embedding on every stage) in 1F1B and
//     in GPipe with activation checkpointing: the same losses and weights;
//   - a 2 x 2 mesh (parallel.pp_size = 2 on 4 ranks: two data-parallel pipelines) gives the plain run's losses;
//   - evaluation runs through the stages and logs the plain run's eval loss;
//   - a pp = 2 checkpoint (each stage's optimizer share, consolidated weights) resumes on 1 rank, on ddp x 2
//     and on pp = 2 with the uninterrupted run's remaining losses, and exports as the single-process one;
//   - what cannot be pipelined is refused by name.
#include <fstream>

#include "tests/dist/dist_e2e_support.hpp"

namespace engine::e2e {
namespace {

const std::vector<std::string> kPp = {"--set", "parallel.plugin=pp"};
// 4 micro-batches of 2 rows per step, on every rank count.
const std::vector<std::string> kFourMicro = {"--set", "train.micro_batch_size=2", "--set", "train.grad_accum=4"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The plain run and the pipelined one on the same batches (run_args's world is the data-parallel size: 1).
std::vector<std::string> plain_args(const Job& job, const fs::path& model, const fs::path& out,
                                    std::vector<std::string> extra = {}) {
  return run_args(job, model, out, 1, with(kFourMicro, extra));
}
std::vector<std::string> pp_args(const Job& job, const fs::path& model, const fs::path& out, int world,
                                 std::vector<std::string> extra = {}) {
  return launched(run_args(job, model, out, 1, with(with(kFourMicro, kPp), extra)), world);
}

std::string run_ok(const fs::path& dir, const std::string& name, std::vector<std::string> args) {
  const fs::path log = dir / (name + ".log");
  const int code = run_engine(std::move(args), log);
  EXPECT_EQ(code, 0) << read_file(log);
  return read_file(log);
}

void two_stages(const Job& job) {
  const fs::path dir = fresh_dir("pp_" + job.recipe);
  const fs::path model = dir / "model";
  const fs::path plain = dir / "plain";
  const std::string plain_text = run_ok(dir, "plain", with(plain_args(job, model, plain), kPp));
  const std::vector<double> ref = losses(plain);
  ASSERT_EQ(ref.size(), size_t(kSteps));
  const fs::path out = dir / "pp2";
  const std::string text = run_ok(dir, "pp2", pp_args(job, model, out, 2));
  EXPECT_NE(text.find("pp: 2 stages (1f1b) over blocks [0, 1), [1, 2)"), std::string::npos) << text;
  EXPECT_NE(text.find("pipeline stage 1 of 2, blocks [1, 2)"), std::string::npos) << text;
  expect_close_losses(ref, losses(out), job.recipe + " pp=2");
  expect_close_weights(plain / "checkpoint-20" / job.weights, out / "checkpoint-20" / job.weights,
                       job.recipe + " pp=2");
  // Per stage: one block each; the tied embedding (the lm_head) on both, the final norm on the last.
  const std::map<int, Held> one = held_bytes_of(plain_text), two = held_bytes_of(text);
  ASSERT_EQ(one.size(), 1u) << plain_text;
  ASSERT_EQ(two.size(), 2u) << text;
  const double full = one.at(0).params + one.at(0).grads_and_state;
  double sum = 0;
  for (const auto& [rank, h] : two) {
    const double share = h.params + h.grads_and_state;
    sum += share;
    std::cout << job.recipe << " pp=2: stage " << rank << " keeps " << share << " of " << full
              << " bytes of parameters, gradients and optimizer state\n";
    EXPECT_LT(share, 0.8 * full) << "stage " << rank;
  }
  EXPECT_GE(sum, full) << "every parameter is kept by a stage";
}

TEST(Pp, TinyLoraOnTwoStagesWithFourMicroBatchesMatchesThePlainRun) { two_stages(kLora); }

TEST(Pp, TinyFullOnTwoStagesWithFourMicroBatchesMatchesThePlainRun) { two_stages(kFull); }


TEST(Pp, FourStagesIn1F1BAndGPipeWithCheckpointingMatchThePlainRun) {
  const fs::path dir = fresh_dir("pp_four");
  const fs::path model = four_block_model(dir);
  const std::vector<std::string> existing;  // model.path exists: the recipe's preset is not created
  const fs::path plain = dir / "plain";
  run_ok(dir, "plain", plain_args(kFull, model, plain, existing));
  const std::vector<double> ref = losses(plain);
  ASSERT_EQ(ref.size(), size_t(kSteps));
  {
    const fs::path out = dir / "pp4";
    const std::string text = run_ok(dir, "pp4", pp_args(kFull, model, out, 4, existing));
    EXPECT_NE(text.find("pp: 4 stages (1f1b) over blocks [0, 1), [1, 2), [2, 3), [3, 4); "), std::string::npos)
        << text;
    EXPECT_NE(text.find("1 on every stage"), std::string::npos) << text;  // the tied embedding
    expect_close_losses(ref, losses(out), "tiny_full (4 blocks) pp=4 1f1b");
    expect_close_weights(plain / "checkpoint-20" / kFull.weights, out / "checkpoint-20" / kFull.weights,
                         "tiny_full (4 blocks) pp=4 1f1b");
  }
  {
    const fs::path out = dir / "gpipe";
    run_ok(dir, "gpipe",
           pp_args(kFull, model, out, 4,
                   with(existing, {"--set", "parallel.schedule=gpipe", "--set", "train.activation_checkpointing=true",
                                   "--set", "parallel.pp_size=2", "--set", "parallel.stages=[3, 1]"})));
    // pp_size 2 on 4 ranks: two pipelines of 2 stages over [0, 3) and [3, 4), data-parallel.
    const fs::path plain8 = dir / "plain8";
    run_ok(dir, "plain8", plain_args(kFull, model, plain8, with(existing, {"--set", "train.micro_batch_size=4"})));
    expect_close_losses(losses(plain8), losses(out), "tiny_full (4 blocks) pp=2 x dp=2 gpipe, checkpointed");
    expect_close_weights(plain8 / "checkpoint-20" / kFull.weights, out / "checkpoint-20" / kFull.weights,
                         "tiny_full (4 blocks) pp=2 x dp=2 gpipe, checkpointed");
  }
}

// A pipeline x data parallel mesh on the 2-block model: 4 ranks as 2 pipelines of 2 stages, each pipeline on
// its half of every micro-batch, against the plain run of twice the rows.
TEST(Pp, TinyLoraOnATwoByTwoMeshMatchesThePlainRun) {
  const fs::path dir = fresh_dir("pp_mesh");
  const fs::path model = dir / "model";
  const fs::path plain = dir / "plain";
  run_ok(dir, "plain", plain_args(kLora, model, plain, {"--set", "train.micro_batch_size=4"}));
  const fs::path out = dir / "mesh";
  const std::string text = run_ok(dir, "mesh", pp_args(kLora, model, out, 4, {"--set", "parallel.pp_size=2"}));
  EXPECT_NE(text.find("2 data-parallel pipelines"), std::string::npos) << text;
  EXPECT_NE(text.find("4 ranks in 2 data-parallel group(s) x micro_batch_size 2 x grad_accum 4 = effective batch of 16"),
            std::string::npos)
      << text;
  expect_close_losses(losses(plain), losses(out), "tiny_lora pp=2 x dp=2");
  expect_close_weights(plain / "checkpoint-20" / kLora.weights, out / "checkpoint-20" / kLora.weights,
                       "tiny_lora pp=2 x dp=2");
}

TEST(Pp, EvaluationRunsThroughTheStagesAndMatchesThePlainRun) {
  const fs::path dir = fresh_dir("pp_eval");
  const fs::path model = dir / "model";
  const std::vector<std::string> eval = {"--set", "data.eval=" + (source_dir() / "data/tiny/eval.jsonl").string(),
                                         "--set", "train.eval_every=10", "--set", "train.max_steps=15"};
  run_ok(dir, "plain", plain_args(kLora, model, dir / "plain", eval));
  run_ok(dir, "pp2", pp_args(kLora, model, dir / "pp2", 2, eval));
  auto eval_losses = [](const fs::path& out) {
    std::vector<double> v;
    for (const auto& j : read_metrics(out))
      if (j.contains("eval_loss")) v.push_back(j["eval_loss"].get<double>());
    return v;
  };
  // Step 10 in the loop and step 15 at the end (the final evaluation runs on every stage too).
  const std::vector<double> a = eval_losses(dir / "plain"), b = eval_losses(dir / "pp2");
  ASSERT_EQ(a.size(), 2u);
  expect_close_losses(a, b, "tiny_lora eval loss at pp=2");
}

TEST(Pp, ATwoStageCheckpointResumesOnOneRankOnDdpAndOnPpAndExportsAsOneProcess) {
  const fs::path dir = fresh_dir("pp_resume");
  const fs::path model = dir / "model";
  const fs::path straight = dir / "straight";
  run_ok(dir, "straight", plain_args(kLora, model, straight));
  const std::vector<double> ref = losses(straight);
  const fs::path two = dir / "two";
  run_ok(dir, "two", pp_args(kLora, model, two, 2));
  const fs::path ckpt = two / "checkpoint-10";
  ASSERT_TRUE(fs::exists(ckpt / "trainer_state.json"));
  for (int r = 0; r < 2; ++r)
    ASSERT_TRUE(fs::exists(ckpt / ("optimizer-rank0000" + std::to_string(r) + "-of-00002.safetensors"))) << r;
  struct Resume {
    std::string name;
    int world;
    std::vector<std::string> extra;
  };
  // ddp x 2 halves the micro-batch per rank to keep the global batch of 4 x 2 rows.
  for (const Resume& r : std::vector<Resume>{{"one", 1, {}},
                                             {"ddp2", 2, {"--set", "parallel.plugin=ddp", "--set", "train.micro_batch_size=1"}},
                                             {"pp2", 2, kPp}}) {
    const fs::path out = dir / ("resumed_" + r.name);
    std::vector<std::string> args = plain_args(kLora, model, out, with({"--resume", ckpt.string()}, r.extra));
    if (r.world > 1) args = launched(args, r.world);
    const std::string text = run_ok(dir, "resumed_" + r.name, args);
    EXPECT_NE(text.find("resumed from"), std::string::npos) << text;
    const std::string what = "pp=2 checkpoint resumed on " + r.name;
    expect_close_losses(std::vector<double>(ref.begin() + 10, ref.end()), losses(out), what);
    expect_close_weights(straight / "checkpoint-20" / kLora.weights, out / "checkpoint-20" / kLora.weights, what);
  }
  expect_same_export(dir, "straight", "two", "engine export of the pp=2 checkpoint against the single-process one");
}

TEST(Pp, WhatCannotBePipelinedIsRefusedByName) {
  const fs::path dir = fresh_dir("pp_refused");
  const fs::path model = dir / "model";
  run_ok(dir, "plain", with(plain_args(kLora, model, dir / "plain"), {"--set", "train.max_steps=1"}));
  auto refused = [&](const std::string& name, std::vector<std::string> args, const std::string& message) {
    const fs::path log = dir / (name + ".log");
    EXPECT_NE(run_engine(std::move(args), log), 0) << name;
    EXPECT_NE(read_file(log).find(message), std::string::npos) << name << ":\n" << read_file(log);
  };
  refused("three", pp_args(kLora, model, dir / "three", 3),
          "pp: a pipeline of 3 stages needs at least as many decoder blocks; the model has 2");
  refused("size", pp_args(kLora, model, dir / "size", 3, {"--set", "parallel.pp_size=2"}),
          "pp: pp_size = 2 does not divide the job's 3 ranks");
  refused("stages", pp_args(kLora, model, dir / "stages", 2, {"--set", "parallel.stages=[1, 2]"}),
          "pp: stages add up to 3 blocks, the model has 2");
  refused("count", pp_args(kLora, model, dir / "count", 2, {"--set", "parallel.stages=[2]"}),
          "pp: stages lists 1 stages for a pipeline of 2 ranks");
  refused("schedule", pp_args(kLora, model, dir / "schedule", 2, {"--set", "parallel.schedule=zigzag"}),
          "zigzag");
  {
    const fs::path log = dir / "qlora.log";
    EXPECT_EQ(run_engine({"validate", (source_dir() / "recipes/tiny_qlora.toml").string(), "--set",
                          "parallel.plugin=pp"},
                         log),
              2);
    EXPECT_NE(read_file(log).find("parallel strategy 'pp' cannot handle quantized base weights"), std::string::npos)
        << read_file(log);
  }
}

}  // namespace
}  // namespace engine::e2e
