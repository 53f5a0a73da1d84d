// A parameter-placing strategy (zero3, fsdp or tp: ENGINE_SHARDED_STRATEGY, one binary each) on CUDA tensors at
// world size 1 (NCCL refuses two ranks on one GPU; several GPUs are the multi-GPU issue's): `engine run
// --nproc-per-node 1 --set parallel.plugin=<strategy>` on tiny_lora and tiny_full against the plain single-GPU
// run. At world 1 every shard is the whole buffer, but the code path is the strategy's: the
// placement, the release of every full value after its block (the caching allocator gets the memory back and
// the tape's references stay valid), the NCCL all-gather into the same storage before the block's forward and
// backward, the reduce-scatter of the gradients into the local shards, the optimizer on the local shards, the
// optimizer shard with its layout in the checkpoint (tp: the split placement, tp_copy/tp_reduce through NCCL
// around every projection, the slices consolidated on save). Labels cuda and dist; skips without a GPU.
#include "tests/cuda/cuda_test_support.hpp"
#include "tests/dist/dist_e2e_support.hpp"

namespace engine::e2e {
namespace {

const std::string kStrategy = ENGINE_SHARDED_STRATEGY;

std::vector<std::string> cuda_args(const Job& job, const fs::path& model, const fs::path& out, bool sharded,
                                   bool recompute) {
  std::vector<std::string> a = run_args(job, model, out, 1, {"--set", "train.device=cuda", "--set", "train.dtype=fp32"});
  if (recompute) a.insert(a.end(), {"--set", "train.activation_checkpointing=true"});
  if (sharded) {
    a.insert(a.end(), {"--set", "parallel.plugin=" + kStrategy});
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
  EXPECT_NE(log.find(kStrategy + ": 1 ranks; each keeps"), std::string::npos) << log;
  expect_close_losses(losses(dir / "plain"), losses(dir / kStrategy), job.recipe + " " + kStrategy + " on CUDA at world 1");
  expect_close_weights(dir / "plain" / "checkpoint-20" / job.weights, dir / kStrategy / "checkpoint-20" / job.weights,
                       job.recipe + " " + kStrategy + " on CUDA at world 1");
  EXPECT_TRUE(fs::exists(dir / kStrategy / "checkpoint-20" / "optimizer-rank00000-of-00001.safetensors"));
}

TEST(ShardedCuda, TinyLoraAtWorldOneMatchesThePlainRun) { same_as_plain(kLora, false); }
TEST(ShardedCuda, TinyFullAtWorldOneMatchesThePlainRun) { same_as_plain(kFull, false); }
TEST(ShardedCuda, TinyFullWithActivationCheckpointingAtWorldOneMatchesThePlainRun) { same_as_plain(kFull, true); }

}  // namespace
}  // namespace engine::e2e
