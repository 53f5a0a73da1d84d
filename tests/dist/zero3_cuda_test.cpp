// zero3 on CUDA tensors at world size 1 (NCCL refuses two ranks on one GPU; several GPUs are the multi-GPU
// issue's): `engine run --nproc-per-node 1 --set parallel.plugin=zero3` on tiny_lora and tiny_full against the
// plain single-GPU run. At world 1 every shard is the whole parameter, but the code path is zero3's: the
// placement, the release of every full value after its block (the caching allocator gets the memory back and
// the tape's references stay valid), the NCCL all-gather into the same storage before the block's forward and
// backward, the reduce-scatter of the gradients into the local shards, the optimizer on the local shards, the
// optimizer shard with its layout in the checkpoint. Labels cuda and dist; skips without a GPU.
#include "tests/cuda/cuda_test_support.hpp"
#include "tests/dist/dist_e2e_support.hpp"

namespace engine::e2e {
namespace {

std::vector<std::string> cuda_args(const Job& job, const fs::path& model, const fs::path& out, bool zero3,
                                   bool recompute) {
  std::vector<std::string> a = run_args(job, model, out, 1, {"--set", "train.device=cuda", "--set", "train.dtype=fp32"});
  if (recompute) a.insert(a.end(), {"--set", "train.activation_checkpointing=true"});
  if (zero3) a = launched(with_zero3(a), 1);
  return a;
}

void same_as_plain(const Job& job, bool recompute) {
  SKIP_WITHOUT_GPU();
  const fs::path dir = fresh_dir("zero3_cuda_" + job.recipe + (recompute ? "_recompute" : ""));
  ASSERT_EQ(run_engine(cuda_args(job, dir / "model", dir / "plain", false, recompute), dir / "plain.log"), 0)
      << read_file(dir / "plain.log");
  ASSERT_EQ(run_engine(cuda_args(job, dir / "model", dir / "zero3", true, recompute), dir / "zero3.log"), 0)
      << read_file(dir / "zero3.log");
  const std::string log = read_file(dir / "zero3.log");
  EXPECT_NE(log.find("zero3: 1 ranks; each keeps"), std::string::npos) << log;
  expect_close_losses(losses(dir / "plain"), losses(dir / "zero3"), job.recipe + " zero3 on CUDA at world 1");
  expect_close_weights(dir / "plain" / "checkpoint-20" / job.weights, dir / "zero3" / "checkpoint-20" / job.weights,
                       job.recipe + " zero3 on CUDA at world 1");
  EXPECT_TRUE(fs::exists(dir / "zero3" / "checkpoint-20" / "optimizer-rank00000-of-00001.safetensors"));
}

TEST(Zero3Cuda, TinyLoraAtWorldOneMatchesThePlainRun) { same_as_plain(kLora, false); }
TEST(Zero3Cuda, TinyFullAtWorldOneMatchesThePlainRun) { same_as_plain(kFull, false); }
TEST(Zero3Cuda, TinyFullWithActivationCheckpointingAtWorldOneMatchesThePlainRun) { same_as_plain(kFull, true); }

}  // namespace
}  // namespace engine::e2e
