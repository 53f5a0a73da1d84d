// A parameter-placing strategy (zero3, fsdp, tp, pp or layers: ENGINE_SHARDED_STRATEGY, one binary each) on CUDA
// tensors at world size 1 (NCCL refuses two ranks on one GPU; several GPUs are the multi-GPU issue's): `engine run
// --nproc-per-node 1 --set parallel.plugin=<strategy>` (layers: one process, no launcher, parallel.devices = 1)
// on tiny_lora and tiny_full against the plain single-GPU run. At world 1 every shard is the whole buffer, but
// the code path is the strategy's: the
// placement, the release of every full value after its block (the caching allocator gets the memory back and
// the tape's references stay valid), the NCCL all-gather into the same storage before the block's forward and
// backward, the reduce-scatter of the gradients into the local shards, the optimizer on the local shards, the
// optimizer shard with its layout in the checkpoint (tp: the split placement, tp_copy/tp_reduce through NCCL
// around every projection, the slices consolidated on save; pp: the pipeline schedule over 4 micro-batches with
// the stage's blocks; layers: the placement answer, the per-device optimizer instance and the runs of blocks).
// layers over more devices than are visible is refused by name. Labels cuda and dist; skips without a GPU.
#include "tests/cuda/cuda_test_support.hpp"
#include "tests/dist/dist_e2e_support.hpp"

namespace engine::e2e {
namespace {

const std::string kStrategy = ENGINE_SHARDED_STRATEGY;
const bool kLayers = kStrategy == "layers";
const bool kPipeline = kStrategy == "pp";

// What the strategy logs about its world-1 placement.
std::string placement_line() {
  if (kLayers) return "layers: 1 devices (balanced), blocks and parameter memory per device: [0, 2)";
  if (kPipeline) return "pp: 1 stages (1f1b) over blocks [0, 2)";
  return kStrategy + ": 1 ranks; each keeps";
}

std::vector<std::string> cuda_args(const Job& job, const fs::path& model, const fs::path& out, bool sharded,
                                   bool recompute) {
  std::vector<std::string> a = run_args(job, model, out, 1, {"--set", "train.device=cuda", "--set", "train.dtype=fp32"});
  if (recompute) a.insert(a.end(), {"--set", "train.activation_checkpointing=true"});
  if (kPipeline) a.insert(a.end(), {"--set", "train.micro_batch_size=2", "--set", "train.grad_accum=4"});
  if (sharded) {
    a.insert(a.end(), {"--set", "parallel.plugin=" + kStrategy});
    if (kLayers)
      a.insert(a.end(), {"--set", "parallel.devices=1"});
    else
      a = launched(a, 1);
  }
  return a;
}

void same_as_plain(const Job& job, bool recompute) {
  SKIP_WITHOUT_GPU();
  const fs::path dir = fresh_dir(kStrategy + "_cuda_" + job.recipe + (recompute ? "_recompute" : ""));
  ASSERT_EQ(run_engine(cuda_args(job, dir / "model", dir / "plain", false, recompute), dir / "plain.log"), 0)
      << read_file(dir / "plain.log");
  ASSERT_EQ(run_engine(cuda_args(job, dir / "model", dir / kStrategy, true, recompute), dir / (kStrategy + ".log")), 0)
      << read_file(dir / (kStrategy + ".log"));
  const std::string log = read_file(dir / (kStrategy + ".log"));
  EXPECT_NE(log.find(placement_line()), std::string::npos) << log;
  expect_close_losses(losses(dir / "plain"), losses(dir / kStrategy), job.recipe + " " + kStrategy + " on CUDA at world 1");
  expect_close_weights(dir / "plain" / "checkpoint-20" / job.weights, dir / kStrategy / "checkpoint-20" / job.weights,
                       job.recipe + " " + kStrategy + " on CUDA at world 1");
  if (!kLayers && !kPipeline) {
    EXPECT_TRUE(fs::exists(dir / kStrategy / "checkpoint-20" / "optimizer-rank00000-of-00001.safetensors"));
  }
}

TEST(ShardedCuda, TinyLoraAtWorldOneMatchesThePlainRun) { same_as_plain(kLora, false); }
TEST(ShardedCuda, TinyFullAtWorldOneMatchesThePlainRun) { same_as_plain(kFull, false); }
TEST(ShardedCuda, TinyFullWithActivationCheckpointingAtWorldOneMatchesThePlainRun) { same_as_plain(kFull, true); }

// layers over more GPUs than are visible (one H200 here), or over several visible GPUs of one process, which the
// CUDA backend cannot drive yet: refused by name before anything trains.
TEST(ShardedCuda, LayersOverSeveralGpusIsRefusedByName) {
  if (!kLayers) GTEST_SKIP() << "layers only";
  SKIP_WITHOUT_GPU();
  const fs::path dir = fresh_dir("layers_cuda_refused");
  const std::vector<std::string> a =
      run_args(kLora, dir / "model", dir / "out", 1,
               {"--set", "train.device=cuda", "--set", "parallel.plugin=layers", "--set", "parallel.devices=9"});
  EXPECT_NE(run_engine(a, dir / "refused.log"), 0);
  const std::string log = read_file(dir / "refused.log");
  EXPECT_TRUE(log.find("layers: 9 devices asked for") != std::string::npos ||
              log.find("running the blocks on several GPUs of one process") != std::string::npos)
      << log;
}

}  // namespace
}  // namespace engine::e2e
