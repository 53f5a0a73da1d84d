// NCCL on the GPU at world size 1 (NCCL refuses two ranks on one GPU; several GPUs are the multi-GPU
// issue's): every collective of a ProcessGroup on CUDA tensors, ordered with the compute stream (the input is
// written by a kernel on the compute stream just before, the result read by the next one), and the ddp code
// path of `engine run --nproc-per-node 1` on CUDA tensors against the plain single-GPU run. Labels cuda and
// dist; skips without a GPU.

#include "engine/dist/process_group.hpp"
#include "tests/dist/free_port.hpp"
#include "engine/runtime/device_select.hpp"
#include "engine/runtime/kernel_table.hpp"
#include "tests/cuda/cuda_test_support.hpp"
#include "tests/e2e/e2e_support.hpp"

namespace engine::dist {
namespace {

using rt::Tensor;


std::vector<float> host_of(const Tensor& t) {
  Tensor f = t;
  if (t.dtype() != ENG_F32) {
    f = Tensor::empty(t.shape(), ENG_F32, t.device());
    t.device().kernels().copy(f, t);
  }
  std::vector<float> v(static_cast<size_t>(f.numel()));
  f.copy_to_host(v.data(), v.size() * sizeof(float));
  return v;
}

TEST(NcclWorld1, EveryCollectiveOnCudaTensorsOrderedWithTheComputeStream) {
  SKIP_WITHOUT_GPU();
  rt::Device& gpu = rt::device_from_spec("cuda");
  DistEnv env;
  env.source = "test";
  env.master_port = testing::free_port();
  ProcessGroup g(env, gpu, ProcessGroupOptions{});
  const std::vector<float> v = cuda_test::random_values(4096, 7);
  for (eng_dtype dt : {ENG_F32, ENG_BF16}) {
    const std::vector<float> want = dt == ENG_BF16 ? cuda_test::round_to_bf16(v) : v;
    // all_reduce_sum: the input comes from a kernel on the compute stream right before
    Tensor a = Tensor::from_vector(rt::Dims{4096}, ENG_F32, gpu, v);
    Tensor b = Tensor::empty(a.shape(), dt, gpu);
    gpu.kernels().fill(b, 0.0);
    gpu.kernels().copy(b, a);  // b = a (converted), on the compute stream
    auto w = g.all_reduce_sum_async(b);
    w->wait();
    EXPECT_EQ(host_of(b), want);
    // broadcast, all_gather (shard -> full), reduce_scatter_sum (full -> shard)
    g.broadcast(b, 0);
    EXPECT_EQ(host_of(b), want);
    Tensor full = Tensor::empty(rt::Dims{4096}, dt, gpu);
    g.all_gather(b, full);
    EXPECT_EQ(host_of(full), want);
    Tensor shard = Tensor::empty(rt::Dims{4096}, dt, gpu);
    g.reduce_scatter_sum(full, shard);
    EXPECT_EQ(host_of(shard), want);
  }
  // the Gloo path of the same group still serves CPU tensors (the trainer's counts)
  Tensor c = Tensor::from_vector(rt::Dims{2}, ENG_F64, rt::cpu_device(), std::vector<double>{3, 4});
  g.all_reduce_sum(c);
  g.barrier();
  double cv[2];
  c.copy_to_host(cv, sizeof cv);
  EXPECT_EQ(cv[0], 3);
  EXPECT_EQ(cv[1], 4);
}

}  // namespace
}  // namespace engine::dist

namespace engine::e2e {
namespace {

std::vector<std::string> args(const fs::path& model, const fs::path& out, bool launched) {
  std::vector<std::string> a = {"run",   (source_dir() / "recipes/tiny_lora.toml").string(),
                                "--set", "model.path=" + model.string(),
                                "--set", "train.output_dir=" + out.string(),
                                "--set", "train.device=cuda",
                                "--set", "train.dtype=fp32",
                                "--set", "train.max_steps=20",
                                "--set", "checkpoint.save_every=0",
                                "--set", "train.eval_every=0",
                                "--set", "log.every=1"};
  if (launched) a.insert(a.end(), {"--nproc-per-node", "1", "--set", "parallel.plugin=ddp"});
  return a;
}

TEST(NcclWorld1, DdpOnCudaTensorsMatchesThePlainSingleGpuRun) {
  SKIP_WITHOUT_GPU();
  const fs::path dir = fresh_dir("nccl_ddp_world1");
  ASSERT_EQ(run_engine(args(dir / "model", dir / "plain", false), dir / "plain.log"), 0) << read_file(dir / "plain.log");
  ASSERT_EQ(run_engine(args(dir / "model", dir / "ddp", true), dir / "ddp.log"), 0) << read_file(dir / "ddp.log");
  const std::string log = read_file(dir / "ddp.log");
  EXPECT_NE(log.find("Gloo and NCCL"), std::string::npos) << log;
  EXPECT_NE(log.find("ddp: 1 replicas"), std::string::npos) << log;
  auto a = train_lines(dir / "plain"), b = train_lines(dir / "ddp");
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 20u);
  for (int s = 1; s <= 20; ++s) {
    const double la = a[s]["loss"].get<double>(), lb = b[s]["loss"].get<double>();
    EXPECT_LT(std::abs(la - lb) / std::abs(la), 1e-6) << "step " << s;
  }
  EXPECT_TRUE(same_bytes(dir / "plain/checkpoint-20/adapter_model.safetensors",
                         dir / "ddp/checkpoint-20/adapter_model.safetensors"))
      << "the NCCL all-reduce at world 1 and the bucket copies must not change a bit";
}

}  // namespace
}  // namespace engine::e2e
