// A parameter-sharding strategy (zero3 or fsdp: ENGINE_SHARDED_STRATEGY, one test binary each) with several
// processes on the CPU (Gloo), through the `engine` binary:
//   - tiny_lora and tiny_full at 1, 2 and 3 ranks give the per-step losses of the plain single-process run
//     with the same global batch (relative difference below 1e-5 over 20 steps) and its final weights; also
//     with activation checkpointing (the block is replayed between the backward gather and the release) and
//     with gradient accumulation (each micro-batch's gradients reduce-scattered into the same shards);
//   - what each rank keeps of parameters + gradients + optimizer state is 1/world of the 1-rank run of the same strategy
//     (within 10%: the padding of the last shard), and the allocator's live bytes fall by that much;
//   - a checkpoint written by 2 ranks (every rank's optimizer shard with its layout, consolidated weights)
//     resumes on 1 rank without a strategy, on 3 ranks with the same strategy and on 3 ranks with the other
//     one (zero3's per-parameter shards and fsdp's flat-buffer parts convert both ways), and ends with the
//     uninterrupted weights; `engine export --merged` of the 2-rank checkpoint equals the single-process export;
//   - a quantized base (nf4) is refused by name.
#include "tests/dist/dist_e2e_support.hpp"

namespace engine::e2e {
namespace {

const std::string kStrategy = ENGINE_SHARDED_STRATEGY;
const std::string kOther = kStrategy == "zero3" ? "fsdp" : "zero3";
const std::vector<std::string> kThisStrategy = {"--set", "parallel.plugin=" + kStrategy};
const std::vector<std::string> kOtherStrategy = {"--set", "parallel.plugin=" + kOther};

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
  const fs::path dir = fresh_dir(kStrategy + "_" + job.recipe);
  const fs::path model = dir / "model";
  const fs::path plain = dir / "plain";
  ASSERT_EQ(run_engine(run_args(job, model, plain, 1), dir / "plain.log"), 0) << read_file(dir / "plain.log");
  const std::vector<double> ref = losses(plain);
  ASSERT_EQ(ref.size(), size_t(kSteps));
  std::map<int, std::map<int, Held>> held;
  for (int world : {1, 2, 3}) {
    const std::string name = kStrategy + "_w" + std::to_string(world);
    const fs::path out = dir / name;
    const std::string text = run_ok(dir, name, run_args(job, model, out, world, kThisStrategy), world);
    EXPECT_NE(text.find(kStrategy + ": " + std::to_string(world) + " ranks; each keeps"), std::string::npos) << text;
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
      std::cout << job.recipe << " " << kStrategy << " at " << world << " ranks: rank " << r << " keeps " << share << " of " << full
                << " bytes of parameters, gradients and optimizer state; allocator " << h.allocator << " vs "
                << held[1][0].allocator << " at 1 rank\n";
      EXPECT_LT(share, 1.1 * full / world) << "rank " << r;
      EXPECT_GT(share, 0.9 * full / world) << "rank " << r;
      EXPECT_LT(h.allocator, held[1][0].allocator - 0.9 * (full - share)) << "rank " << r;
    }
  }
}

TEST(Sharded, TinyLoraOnOneTwoAndThreeRanksMatchesThePlainRun) { equivalence(kLora); }

TEST(Sharded, TinyFullOnOneTwoAndThreeRanksMatchesThePlainRun) { equivalence(kFull); }

TEST(Sharded, CheckpointingAndGradientAccumulationKeepTheLosses) {
  const fs::path dir = fresh_dir(kStrategy + "_variants");
  const fs::path model = dir / "model";
  const fs::path plain = dir / "plain";
  ASSERT_EQ(run_engine(run_args(kFull, model, plain, 1), dir / "plain.log"), 0) << read_file(dir / "plain.log");
  const std::vector<double> ref = losses(plain);
  {  // every block recomputed in backward: gathered again before the replay
    const fs::path out = dir / "recompute";
    const std::string text =
        run_ok(dir, "recompute",
               with(run_args(kFull, model, out, 2, kThisStrategy), {"--set", "train.activation_checkpointing=true"}), 2);
    expect_close_losses(ref, losses(out), "tiny_full " + kStrategy + " with activation checkpointing at 2 ranks");
    expect_close_weights(plain / "checkpoint-20" / kFull.weights, out / "checkpoint-20" / kFull.weights,
                         "tiny_full " + kStrategy + " with activation checkpointing at 2 ranks");
  }
  {  // 3 ranks x 1 row x 2 micro-batches: the second micro-batch's gradients add into the same shards
    const fs::path out = dir / "accumulate";
    std::vector<std::string> a = run_args(kFull, model, out, 3, kThisStrategy);
    a.insert(a.end(), {"--set", "train.micro_batch_size=1", "--set", "train.grad_accum=2"});
    const std::string text = run_ok(dir, "accumulate", a, 3);
    EXPECT_NE(text.find("3 ranks x micro_batch_size 1 x grad_accum 2 = effective batch of 6 rows"), std::string::npos)
        << text;
    expect_close_losses(ref, losses(out), "tiny_full " + kStrategy + " with grad_accum 2 at 3 ranks");
    expect_close_weights(plain / "checkpoint-20" / kFull.weights, out / "checkpoint-20" / kFull.weights,
                         "tiny_full " + kStrategy + " with grad_accum 2 at 3 ranks");
  }
}

TEST(Sharded, ATwoRankCheckpointResumesOnOneAndThreeRanksAndExportsAsOneProcess) {
  const fs::path dir = fresh_dir(kStrategy + "_resume");
  const fs::path model = dir / "model";
  const fs::path straight = dir / "straight";
  ASSERT_EQ(run_engine(run_args(kLora, model, straight, 1), dir / "straight.log"), 0)
      << read_file(dir / "straight.log");
  const std::vector<double> ref = losses(straight);
  const fs::path two = dir / "two";
  run_ok(dir, "two", run_args(kLora, model, two, 2, kThisStrategy), 2);
  const fs::path ckpt = two / "checkpoint-10";
  ASSERT_TRUE(fs::exists(ckpt / "trainer_state.json"));
  for (int r = 0; r < 2; ++r) {
    const fs::path share = ckpt / ("optimizer-rank0000" + std::to_string(r) + "-of-00002.safetensors");
    ASSERT_TRUE(fs::exists(share)) << share;
    const io::SafetensorsFile f = io::SafetensorsFile::open(share);
    ASSERT_TRUE(f.metadata().count("engine.shard_layout")) << share << ": the shard layout is missing";
    const std::string layout = f.metadata().at("engine.shard_layout");
    EXPECT_NE(layout.find("\"rank\":" + std::to_string(r)), std::string::npos) << layout;
    // zero3 records a shard size per parameter, fsdp the [begin, end) part of each parameter in the rank's shard.
    EXPECT_EQ(layout.find(":[") != std::string::npos, kStrategy == "fsdp") << layout;
  }
  EXPECT_FALSE(fs::exists(two / ".optimizer-shards" / "step-10")) << "the shares were moved into the checkpoint";
  // (world, strategy of the resumed run): none at 1 rank, the same and the other at 3 ranks.
  for (const auto& [world, strategy] : std::vector<std::pair<int, std::vector<std::string>>>{
           {1, {}}, {3, kThisStrategy}, {3, kOtherStrategy}}) {
    const std::string how = strategy.empty() ? "no strategy" : strategy.back().substr(std::strlen("parallel.plugin="));
    const std::string name = "resumed" + std::to_string(world) + "_" + how;
    const fs::path out = dir / name;
    const fs::path log = dir / (name + ".log");
    std::vector<std::string> args = run_args(kLora, model, out, world, {"--resume", ckpt.string()});
    if (world > 1) args = launched(with(args, strategy), world);
    ASSERT_EQ(run_engine(args, log), 0) << read_file(log);
    EXPECT_NE(read_file(log).find("resumed from"), std::string::npos);
    const std::string what = "2-rank " + kStrategy + " checkpoint resumed on " + std::to_string(world) + " with " + how;
    expect_close_losses(std::vector<double>(ref.begin() + 10, ref.end()), losses(out), what);
    expect_close_weights(straight / "checkpoint-20" / kLora.weights, out / "checkpoint-20" / kLora.weights, what);
  }
  // engine export --merged of the 2-rank checkpoint and of the single-process one.
  expect_same_export(dir, "straight", "two",
                     "engine export of the 2-rank " + kStrategy + " checkpoint against the single-process one");
}

TEST(Sharded, QuantizedBasesAreRefusedByName) {
  const fs::path dir = fresh_dir(kStrategy + "_refused");
  const fs::path log = dir / "qlora.log";
  EXPECT_EQ(run_engine({"validate", (source_dir() / "recipes/tiny_qlora.toml").string(), "--set",
                        "parallel.plugin=" + kStrategy},
                       log),
            2);
  EXPECT_NE(read_file(log).find("parallel strategy '" + kStrategy + "' cannot handle quantized base weights"),
            std::string::npos)
      << read_file(log);
}

}  // namespace
}  // namespace engine::e2e
