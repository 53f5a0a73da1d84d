// zero3 with several processes on the CPU (Gloo), through the `engine` binary:
//   - tiny_lora and tiny_full at 1, 2 and 3 ranks give the per-step losses of the plain single-process run
//     with the same global batch (relative difference below 1e-5 over 20 steps) and its final weights; also
//     with activation checkpointing (the block is replayed between the backward gather and the release) and
//     with gradient accumulation (each micro-batch's gradients reduce-scattered into the same shards);
//   - what each rank keeps of parameters + gradients + optimizer state is 1/world of the 1-rank zero3 run
//     (within 10%: the padding of the last shard), and the allocator's live bytes fall by that much;
//   - a checkpoint written by 2 ranks (every rank's optimizer shard with its layout, consolidated weights)
//     resumes on 1 rank without a strategy and on 3 ranks with zero3, and ends with the uninterrupted
//     weights; `engine export --merged` of the 2-rank checkpoint equals the single-process export;
//   - a quantized base (nf4) is refused by name, and so is fsdp.
#include "tests/dist/dist_e2e_support.hpp"

namespace engine::e2e {
namespace {

const std::vector<std::string> kZero3 = {"--set", "parallel.plugin=zero3"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Runs `args` (launched with --nproc-per-node `world`) into dir/name; returns the log.
std::string run_ok(const fs::path& dir, const std::string& name, std::vector<std::string> args, int world) {
  const fs::path log = dir / (name + ".log");
  const int code = run_engine(launched(std::move(args), world), log);
  EXPECT_EQ(code, 0) << read_file(log);
  return read_file(log);
}

void equivalence(const Job& job) {
  const fs::path dir = fresh_dir("zero3_" + job.recipe);
  const fs::path model = dir / "model";
  const fs::path plain = dir / "plain";
  ASSERT_EQ(run_engine(run_args(job, model, plain, 1), dir / "plain.log"), 0) << read_file(dir / "plain.log");
  const std::vector<double> ref = losses(plain);
  ASSERT_EQ(ref.size(), size_t(kSteps));
  std::map<int, std::map<int, Held>> held;
  for (int world : {1, 2, 3}) {
    const std::string name = "zero3_w" + std::to_string(world);
    const fs::path out = dir / name;
    const std::string text = run_ok(dir, name, run_args(job, model, out, world, kZero3), world);
    EXPECT_NE(text.find("zero3: " + std::to_string(world) + " ranks; each keeps"), std::string::npos) << text;
    expect_close_losses(ref, losses(out), job.recipe + " " + name);
    expect_close_weights(plain / "checkpoint-20" / job.weights, out / "checkpoint-20" / job.weights,
                         job.recipe + " " + name);
    held[world] = held_bytes_of(text);
    ASSERT_EQ(held[world].size(), size_t(world)) << text;
  }
  // Per rank, parameters + gradients + optimizer state fall as 1/world, and the allocator shows it.
  const double full = held[1][0].params + held[1][0].grads_and_state;
  for (int world : {2, 3}) {
    for (int r = 0; r < world; ++r) {
      const Held& h = held[world][r];
      const double share = h.params + h.grads_and_state;
      std::cout << job.recipe << " zero3 at " << world << " ranks: rank " << r << " keeps " << share << " of " << full
                << " bytes of parameters, gradients and optimizer state; allocator " << h.allocator << " vs "
                << held[1][0].allocator << " at 1 rank\n";
      EXPECT_LT(share, 1.1 * full / world) << "rank " << r;
      EXPECT_GT(share, 0.9 * full / world) << "rank " << r;
      EXPECT_LT(h.allocator, held[1][0].allocator - 0.9 * (full - share)) << "rank " << r;
    }
  }
}

TEST(Zero3, TinyLoraOnOneTwoAndThreeRanksMatchesThePlainRun) { equivalence(kLora); }

TEST(Zero3, TinyFullOnOneTwoAndThreeRanksMatchesThePlainRun) { equivalence(kFull); }

TEST(Zero3, CheckpointingAndGradientAccumulationKeepTheLosses) {
  const fs::path dir = fresh_dir("zero3_variants");
  const fs::path model = dir / "model";
  const fs::path plain = dir / "plain";
  ASSERT_EQ(run_engine(run_args(kFull, model, plain, 1), dir / "plain.log"), 0) << read_file(dir / "plain.log");
  const std::vector<double> ref = losses(plain);
  {  // every block recomputed in backward: gathered again before the replay
    const fs::path out = dir / "recompute";
    const std::string text =
        run_ok(dir, "recompute",
               with(run_args(kFull, model, out, 2, kZero3), {"--set", "train.activation_checkpointing=true"}), 2);
    expect_close_losses(ref, losses(out), "tiny_full zero3 with activation checkpointing at 2 ranks");
    expect_close_weights(plain / "checkpoint-20" / kFull.weights, out / "checkpoint-20" / kFull.weights,
                         "tiny_full zero3 with activation checkpointing at 2 ranks");
  }
  {  // 3 ranks x 1 row x 2 micro-batches: the second micro-batch's gradients add into the same shards
    const fs::path out = dir / "accumulate";
    std::vector<std::string> a = run_args(kFull, model, out, 3, kZero3);
    a.insert(a.end(), {"--set", "train.micro_batch_size=1", "--set", "train.grad_accum=2"});
    const std::string text = run_ok(dir, "accumulate", a, 3);
    EXPECT_NE(text.find("3 ranks x micro_batch_size 1 x grad_accum 2 = effective batch of 6 rows"), std::string::npos)
        << text;
    expect_close_losses(ref, losses(out), "tiny_full zero3 with grad_accum 2 at 3 ranks");
    expect_close_weights(plain / "checkpoint-20" / kFull.weights, out / "checkpoint-20" / kFull.weights,
                         "tiny_full zero3 with grad_accum 2 at 3 ranks");
  }
}

TEST(Zero3, ATwoRankCheckpointResumesOnOneAndThreeRanksAndExportsAsOneProcess) {
  const fs::path dir = fresh_dir("zero3_resume");
  const fs::path model = dir / "model";
  const fs::path straight = dir / "straight";
  ASSERT_EQ(run_engine(run_args(kLora, model, straight, 1), dir / "straight.log"), 0)
      << read_file(dir / "straight.log");
  const std::vector<double> ref = losses(straight);
  const fs::path two = dir / "two";
  run_ok(dir, "two", run_args(kLora, model, two, 2, kZero3), 2);
  const fs::path ckpt = two / "checkpoint-10";
  ASSERT_TRUE(fs::exists(ckpt / "trainer_state.json"));
  for (int r = 0; r < 2; ++r) {
    const fs::path share = ckpt / ("optimizer-rank0000" + std::to_string(r) + "-of-00002.safetensors");
    ASSERT_TRUE(fs::exists(share)) << share;
    const io::SafetensorsFile f = io::SafetensorsFile::open(share);
    ASSERT_TRUE(f.metadata().count("engine.shard_layout")) << share << ": the shard layout is missing";
    EXPECT_NE(f.metadata().at("engine.shard_layout").find("\"rank\":" + std::to_string(r)), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(two / ".optimizer-shards" / "step-10")) << "the shares were moved into the checkpoint";
  for (int world : {1, 3}) {
    const std::string name = "resumed" + std::to_string(world);
    const fs::path out = dir / name;
    const fs::path log = dir / (name + ".log");
    std::vector<std::string> args = run_args(kLora, model, out, world, {"--resume", ckpt.string()});
    if (world > 1) args = launched(with(args, kZero3), world);
    ASSERT_EQ(run_engine(args, log), 0) << read_file(log);
    EXPECT_NE(read_file(log).find("resumed from"), std::string::npos);
    expect_close_losses(std::vector<double>(ref.begin() + 10, ref.end()), losses(out),
                        "2-rank zero3 checkpoint resumed on " + std::to_string(world));
    expect_close_weights(straight / "checkpoint-20" / kLora.weights, out / "checkpoint-20" / kLora.weights,
                         "2-rank zero3 checkpoint resumed on " + std::to_string(world));
  }
  // engine export --merged of the 2-rank zero3 checkpoint and of the single-process one.
  for (const std::string which : {"straight", "two"}) {
    const fs::path log = dir / ("export_" + which + ".log");
    ASSERT_EQ(run_engine({"export", "--checkpoint", (dir / which / "checkpoint-20").string(), "--merged", "--out",
                          (dir / ("export_" + which)).string(), "--dtype", "fp32"},
                         log),
              0)
        << read_file(log);
  }
  expect_close_weights(dir / "export_straight" / "model.safetensors", dir / "export_two" / "model.safetensors",
                       "engine export of the 2-rank zero3 checkpoint against the single-process one");
}

TEST(Zero3, QuantizedBasesAndFsdpAreRefusedByName) {
  const fs::path dir = fresh_dir("zero3_refused");
  const fs::path log = dir / "qlora.log";
  EXPECT_EQ(run_engine({"validate", (source_dir() / "recipes/tiny_qlora.toml").string(), "--set",
                        "parallel.plugin=zero3"},
                       log),
            2);
  EXPECT_NE(read_file(log).find("parallel strategy 'zero3' cannot handle quantized base weights"), std::string::npos)
      << read_file(log);
  const fs::path fsdp = dir / "fsdp.log";
  EXPECT_EQ(run_engine({"validate", (source_dir() / "recipes/tiny_lora.toml").string(), "--set",
                        "parallel.plugin=fsdp"},
                       fsdp),
            2);
  EXPECT_NE(read_file(fsdp).find("parallel strategy 'fsdp' is not available yet"), std::string::npos)
      << read_file(fsdp);
  EXPECT_NE(read_file(fsdp).find("Use plugin = \"zero3\""), std::string::npos) << read_file(fsdp);
}

}  // namespace
}  // namespace engine::e2e
