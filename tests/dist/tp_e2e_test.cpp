// Tensor parallelism (plugins/tp) with several processes on the CPU (Gloo), through the `engine` binary:
//   - tiny_lora and tiny_full at tp = 2 give the per-step losses of the plain single-process run on the same
//     batch (relative difference below 1e-5 over 20 steps; every rank of a tp group trains on the whole batch;
//     the loss is the vocabulary-parallel cross-entropy, the embedding a vocabulary-parallel lookup)
//     and, consolidated, its final weights; also with activation checkpointing (a replayed block repeats its
//     collectives) and with gradient accumulation;
//   - each rank keeps half of every split parameter (block projections, the embedding and lm_head split over
//     the vocabulary): its parameters + gradients + optimizer state are a little over half of the 1-rank
//     run's (the norms and LoRA's matrix on the whole side stay whole);
//   - a tp = 2 checkpoint (each rank's optimizer slice with its layout, consolidated weights) resumes on 1 rank
//     without a strategy, on 2 ranks with ddp and on 2 with tp, each ending with the uninterrupted weights;
//     `engine export --merged` of it equals the single-process export;
//   - a 2 x 2 mesh (parallel.tp_size = 2 on 4 ranks: two data-parallel groups of tp = 2) gives the plain run's
//     losses and weights, and its checkpoint resumes on one rank;
//   - what cannot be split is refused by name: 3 ranks (the 512-token vocabulary), 4 ranks of a model with 2
//     key/value heads, a tp_size that does not divide the world size, a quantized (nf4) base.
#include "tests/dist/dist_e2e_support.hpp"

namespace engine::e2e {
namespace {

const std::vector<std::string> kTp = {"--set", "parallel.plugin=tp"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// tp = `world` on the batch of the 1-rank run (run_args's world is the data-parallel size: 1).
std::vector<std::string> tp_args(const Job& job, const fs::path& model, const fs::path& out, int world,
                                 std::vector<std::string> extra = {}) {
  return launched(run_args(job, model, out, 1, with(kTp, extra)), world);
}

std::string run_ok(const fs::path& dir, const std::string& name, std::vector<std::string> args) {
  const fs::path log = dir / (name + ".log");
  const int code = run_engine(std::move(args), log);
  EXPECT_EQ(code, 0) << read_file(log);
  return read_file(log);
}

void equivalence(const Job& job) {
  const fs::path dir = fresh_dir("tp_" + job.recipe);
  const fs::path model = dir / "model";
  const fs::path plain = dir / "plain";
  const std::string plain_text = run_ok(dir, "plain", with(run_args(job, model, plain, 1), kTp));
  const std::vector<double> ref = losses(plain);
  ASSERT_EQ(ref.size(), size_t(kSteps));
  const fs::path out = dir / "tp2";
  const std::string text = run_ok(dir, "tp2", tp_args(job, model, out, 2));
  EXPECT_NE(text.find("tp: 2 ranks; each keeps 1/2 of "), std::string::npos) << text;
  expect_close_losses(ref, losses(out), job.recipe + " tp=2");
  expect_close_weights(plain / "checkpoint-20" / job.weights, out / "checkpoint-20" / job.weights,
                       job.recipe + " tp=2");
  // Per rank: the replicated part whole, the split part halved. tp at 1 rank keeps everything.
  const std::map<int, Held> one = held_bytes_of(plain_text), two = held_bytes_of(text);
  ASSERT_EQ(one.size(), 1u) << plain_text;
  ASSERT_EQ(two.size(), 2u) << text;
  const double full = one.at(0).params + one.at(0).grads_and_state;
  for (const auto& [rank, h] : two) {
    const double share = h.params + h.grads_and_state;
    std::cout << job.recipe << " tp=2: rank " << rank << " keeps " << share << " of " << full
              << " bytes of parameters, gradients and optimizer state (allocator " << h.allocator << " vs "
              << one.at(0).allocator << ")\n";
    // Everything but the norms (and LoRA's matrices on the whole side) is split: a little over half.
    EXPECT_LT(share, (job.recipe == "tiny_full" ? 0.51 : 0.65) * full) << "rank " << rank;
    EXPECT_GT(share, 0.5 * full) << "rank " << rank << ": the norms stay whole";
    EXPECT_EQ(h.params, two.at(0).params) << "the ranks hold equal halves";
  }
}

TEST(Tp, TinyLoraOnTwoRanksMatchesThePlainRun) { equivalence(kLora); }

TEST(Tp, TinyFullOnTwoRanksMatchesThePlainRun) { equivalence(kFull); }

// A tensor x data parallel mesh: 4 ranks as 2 data-parallel groups of tp = 2 (parallel.tp_size = 2), each
// group on its half of the global batch (3 rows), against the plain run of 6 rows.
void mesh(const Job& job) {
  const fs::path dir = fresh_dir("tp_mesh_" + job.recipe);
  const fs::path model = dir / "model";
  const fs::path plain = dir / "plain";
  run_ok(dir, "plain", run_args(job, model, plain, 1));
  const fs::path out = dir / "mesh";
  const std::string text =
      run_ok(dir, "mesh", launched(run_args(job, model, out, 2, with(kTp, {"--set", "parallel.tp_size=2"})), 4));
  EXPECT_NE(text.find("tp: 4 ranks as 2 data-parallel groups of 2; each keeps 1/2 of"), std::string::npos) << text;
  EXPECT_NE(text.find("4 ranks in 2 data-parallel group(s) x micro_batch_size 3 x grad_accum 1 = effective batch of 6"),
            std::string::npos)
      << text;
  const std::vector<double> ref = losses(plain);
  expect_close_losses(ref, losses(out), job.recipe + " tp=2 x dp=2");
  expect_close_weights(plain / "checkpoint-20" / job.weights, out / "checkpoint-20" / job.weights,
                       job.recipe + " tp=2 x dp=2");
  // The mesh's checkpoint (4 shares, two of each slice) resumes on one rank.
  const fs::path resumed = dir / "resumed";
  run_ok(dir, "resumed", run_args(job, model, resumed, 1, {"--resume", (out / "checkpoint-10").string()}));
  expect_close_losses(std::vector<double>(ref.begin() + 10, ref.end()), losses(resumed),
                      job.recipe + " tp=2 x dp=2 checkpoint resumed on 1 rank");
  expect_close_weights(plain / "checkpoint-20" / job.weights, resumed / "checkpoint-20" / job.weights,
                       job.recipe + " tp=2 x dp=2 checkpoint resumed on 1 rank");
}

TEST(Tp, TinyLoraOnATwoByTwoMeshMatchesThePlainRun) { mesh(kLora); }

TEST(Tp, TinyFullOnATwoByTwoMeshMatchesThePlainRun) { mesh(kFull); }

TEST(Tp, CheckpointingAndGradientAccumulationKeepTheLosses) {
  const fs::path dir = fresh_dir("tp_variants");
  const fs::path model = dir / "model";
  const fs::path plain = dir / "plain";
  run_ok(dir, "plain", run_args(kFull, model, plain, 1));
  const std::vector<double> ref = losses(plain);
  {
    const fs::path out = dir / "recompute";
    run_ok(dir, "recompute", tp_args(kFull, model, out, 2, {"--set", "train.activation_checkpointing=true"}));
    expect_close_losses(ref, losses(out), "tiny_full tp=2 with activation checkpointing");
    expect_close_weights(plain / "checkpoint-20" / kFull.weights, out / "checkpoint-20" / kFull.weights,
                         "tiny_full tp=2 with activation checkpointing");
  }
  {
    const fs::path out = dir / "accumulate";
    const std::string text = run_ok(
        dir, "accumulate",
        tp_args(kFull, model, out, 2, {"--set", "train.micro_batch_size=3", "--set", "train.grad_accum=2"}));
    EXPECT_NE(text.find("2 ranks in 1 data-parallel group(s) x micro_batch_size 3 x grad_accum 2 = effective "
                        "batch of 6 rows"),
              std::string::npos)
        << text;
    expect_close_losses(ref, losses(out), "tiny_full tp=2 with grad_accum 2");
    expect_close_weights(plain / "checkpoint-20" / kFull.weights, out / "checkpoint-20" / kFull.weights,
                         "tiny_full tp=2 with grad_accum 2");
  }
}

// Evaluation under tp runs on every rank (the forward needs the collectives); rank 0 logs the same eval loss
// as the plain run.
TEST(Tp, EvaluationRunsOnEveryRankAndMatchesThePlainRun) {
  const fs::path dir = fresh_dir("tp_eval");
  const fs::path model = dir / "model";
  const std::vector<std::string> eval = {"--set", "data.eval=" + (source_dir() / "data/tiny/eval.jsonl").string(),
                                         "--set", "train.eval_every=10"};
  run_ok(dir, "plain", run_args(kLora, model, dir / "plain", 1, eval));
  run_ok(dir, "tp2", tp_args(kLora, model, dir / "tp2", 2, eval));
  auto eval_losses = [](const fs::path& out) {
    std::vector<double> v;
    for (const auto& j : read_metrics(out))
      if (j.contains("eval_loss")) v.push_back(j["eval_loss"].get<double>());
    return v;
  };
  const std::vector<double> a = eval_losses(dir / "plain"), b = eval_losses(dir / "tp2");
  ASSERT_EQ(a.size(), 2u);
  expect_close_losses(a, b, "tiny_lora eval loss at tp=2");
}

TEST(Tp, ATwoRankCheckpointResumesOnOneRankOnDdpAndOnTpAndExportsAsOneProcess) {
  const fs::path dir = fresh_dir("tp_resume");
  const fs::path model = dir / "model";
  const fs::path straight = dir / "straight";
  run_ok(dir, "straight", run_args(kLora, model, straight, 1));
  const std::vector<double> ref = losses(straight);
  const fs::path two = dir / "two";
  run_ok(dir, "two", tp_args(kLora, model, two, 2));
  const fs::path ckpt = two / "checkpoint-10";
  ASSERT_TRUE(fs::exists(ckpt / "trainer_state.json"));
  for (int r = 0; r < 2; ++r) {
    const fs::path share = ckpt / ("optimizer-rank0000" + std::to_string(r) + "-of-00002.safetensors");
    ASSERT_TRUE(fs::exists(share)) << share;
    const io::SafetensorsFile f = io::SafetensorsFile::open(share);
    ASSERT_TRUE(f.metadata().count("engine.shard_layout")) << share << ": the shard layout is missing";
    const std::string layout = f.metadata().at("engine.shard_layout");
    EXPECT_NE(layout.find("\"dim\":1"), std::string::npos) << layout;  // o/down's A: split along its input
    EXPECT_NE(layout.find("\"dim\":0"), std::string::npos) << layout;  // q/k/v/gate/up's B
  }
  struct Resume {
    std::string name;
    int world;
    std::vector<std::string> extra;
  };
  for (const Resume& r : std::vector<Resume>{{"one", 1, {}},
                                             {"ddp2", 2, {"--set", "parallel.plugin=ddp"}},
                                             {"tp2", 2, kTp}}) {
    const fs::path out = dir / ("resumed_" + r.name);
    std::vector<std::string> args = run_args(kLora, model, out, r.name == "ddp2" ? 2 : 1,
                                             with({"--resume", ckpt.string()}, r.extra));
    if (r.world > 1) args = launched(args, r.world);
    const std::string text = run_ok(dir, "resumed_" + r.name, args);
    EXPECT_NE(text.find("resumed from"), std::string::npos) << text;
    const std::string what = "tp=2 checkpoint resumed on " + r.name;
    expect_close_losses(std::vector<double>(ref.begin() + 10, ref.end()), losses(out), what);
    expect_close_weights(straight / "checkpoint-20" / kLora.weights, out / "checkpoint-20" / kLora.weights, what);
  }
  expect_same_export(dir, "straight", "two", "engine export of the tp=2 checkpoint against the single-process one");
}

TEST(Tp, WhatCannotBeSplitIsRefusedByName) {
  const fs::path dir = fresh_dir("tp_refused");
  const fs::path model = dir / "model";
  run_ok(dir, "plain", with(run_args(kLora, model, dir / "plain", 1), {"--set", "train.max_steps=1"}));
  {  // 3 ranks: the 512-token vocabulary (and q_proj's 64 features) do not split into 3 equal slices
    const fs::path log = dir / "three.log";
    EXPECT_NE(run_engine(tp_args(kLora, model, dir / "three", 3), log), 0);
    EXPECT_NE(read_file(log).find("'model.embed_tokens.weight' of shape (512, 64) cannot be split into 3 equal "
                                  "slices along dimension 0"),
              std::string::npos)
        << read_file(log);
  }
  {  // 4 ranks: every projection splits, but the model's 2 key/value heads do not go 4 ways
    const fs::path log = dir / "four.log";
    EXPECT_NE(run_engine(tp_args(kLora, model, dir / "four", 4), log), 0);
    EXPECT_NE(read_file(log).find("the model has 4 attention heads and 2 key/value heads: each rank needs whole heads"),
              std::string::npos)
        << read_file(log);
  }
  {
    const fs::path log = dir / "size.log";
    EXPECT_NE(run_engine(tp_args(kLora, model, dir / "size", 3, {"--set", "parallel.tp_size=2"}), log), 0);
    EXPECT_NE(read_file(log).find("tp: tp_size = 2 does not divide the job's 3 ranks"), std::string::npos)
        << read_file(log);
  }
  {
    const fs::path log = dir / "qlora.log";
    EXPECT_EQ(run_engine({"validate", (source_dir() / "recipes/tiny_qlora.toml").string(), "--set",
                          "parallel.plugin=tp"},
                         log),
              2);
    EXPECT_NE(read_file(log).find("parallel strategy 'tp' cannot handle quantized base weights"), std::string::npos)
        << read_file(log);
  }
}

}  // namespace
}  // namespace engine::e2e
