// kernels/cuda/rope.cu against the CPU reference (kernels/cpu/rope.cpp): default, linear and llama3 scalings
// (inv_freq from cpu::rope_inv_freq), forward and inverse rotation, partial rotary_dim (pass-through dims),
// in place, and positions up to 32k, where fp32 must stay within 1e-5 of the CPU (the angle is the same fp32
// product on both sides, and the GPU uses the accurate sincosf). Error norm and tolerances:
// cuda_test_support.hpp (fp32 1e-5, bf16 1e-2).
#include "kernels/cuda/rope.cuh"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/rope.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "tests/cuda/cuda_test_support.hpp"
#include "tests/cuda/storage_type.hpp"

namespace engine::cuda_test {
namespace {

struct Case {
  std::string name;
  cpu::RopeParams params;
  int64_t B, T, H, D;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  cpu::RopeParams p;
  p.theta = 10000.0;
  p.rotary_dim = 64;
  out.push_back({"default", p, 2, 37, 3, 64});
  p.theta = 1000000.0;  // Qwen2
  p.rotary_dim = 128;
  out.push_back({"default_qwen", p, 1, 29, 4, 128});
  p.theta = 10000.0;
  p.rotary_dim = 32;
  out.push_back({"partial_rotary", p, 2, 11, 5, 80});  // dims 32..79 pass through
  p.rotary_dim = 64;
  p.scaling = cpu::RopeParams::kLinear;
  p.factor = 4.0;
  out.push_back({"linear", p, 3, 13, 2, 64});
  p.theta = 500000.0;  // Llama 3.1
  p.rotary_dim = 128;
  p.scaling = cpu::RopeParams::kLlama3;
  p.factor = 8.0;
  p.low_freq_factor = 1.0;
  p.high_freq_factor = 4.0;
  p.original_max_position = 8192;
  out.push_back({"llama3", p, 2, 17, 8, 128});
  return out;
}

// (B, T) positions: random in [0, 32768), the last few of every sequence at 32760.. (the far end), one 0.
std::vector<int32_t> positions(int64_t B, int64_t T, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, 32767);
  std::vector<int32_t> pos(static_cast<size_t>(B * T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      int32_t v = dist(gen);
      if (t == 0) v = 0;
      if (t >= T - 4) v = static_cast<int32_t>(32760 + (t - (T - 4)) * 2 + b);
      pos[static_cast<size_t>(b * T + t)] = v;
    }
  return pos;
}

template <typename T>
class RopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
  }
  void TearDown() override {
    if (stream_) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
  cpu::ThreadPool pool_{2};
};
TYPED_TEST_SUITE(RopeTest, StorageTypes);

TYPED_TEST(RopeTest, MatchesCpuForEveryScaling) {
  using T = TypeParam;
  uint64_t seed = 100;
  for (const Case& c : cases()) {
    const std::vector<float> inv = cpu::rope_inv_freq(c.params);
    const int64_t rot = c.params.rotary_dim;
    ASSERT_EQ(static_cast<int64_t>(inv.size()), rot / 2);
    const auto n = static_cast<size_t>(c.B * c.T * c.H * c.D);
    const auto x = as_stored<T>(random_values(n, ++seed));
    const auto pos = positions(c.B, c.T, ++seed);
    DeviceBuffer<T> dx(to_storage<T>(x));
    DeviceBuffer<int32_t> dpos(pos);
    DeviceBuffer<float> dinv(inv);
    for (const bool inverse : {false, true}) {
      for (const bool in_place : {false, true}) {
        SCOPED_TRACE(c.name + (inverse ? " inverse" : " forward") + (in_place ? " in place" : ""));
        std::vector<float> want(n);
        cpu::rope_apply<float>(this->pool_, x.data(), pos.data(), inv.data(), c.B, c.T, c.H, c.D, rot,
                               inverse, want.data());
        DeviceBuffer<T> y(n);
        if (in_place) y.upload(to_storage<T>(x));
        cuda::rope_apply<T>(this->stream_, in_place ? y.get() : dx.get(), dpos.get(), dinv.get(), c.B, c.T,
                            c.H, c.D, rot, inverse, y.get());
        EXPECT_LE(rel_error(to_float<T>(y.download()), want), tolerance<T>());
      }
    }
  }
}

// fp32 at the far positions alone: every token at 32000..32767, the case where a fast (__sinf) or a
// double-vs-float angle would differ from the CPU by far more than 1e-5.
TEST(RopeFp32Test, FarPositionsWithin1e5OfCpu) {
  SKIP_WITHOUT_GPU();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  cpu::ThreadPool pool(2);
  cpu::RopeParams p;
  p.theta = 10000.0;
  p.rotary_dim = 128;
  const int64_t B = 1, T = 768, H = 2, D = 128;
  std::vector<int32_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(32000 + t);
  const std::vector<float> inv = cpu::rope_inv_freq(p);
  const auto x = random_values(static_cast<size_t>(B * T * H * D), 7);
  std::vector<float> want(x.size());
  cpu::rope_apply<float>(pool, x.data(), pos.data(), inv.data(), B, T, H, D, p.rotary_dim, false,
                         want.data());
  DeviceBuffer<float> dx(x), y(x.size()), dinv(inv);
  DeviceBuffer<int32_t> dpos(pos);
  cuda::rope_apply<float>(stream, dx.get(), dpos.get(), dinv.get(), B, T, H, D, p.rotary_dim, false, y.get());
  EXPECT_LE(rel_error(y.download(), want), 1e-5);
  // inverse(forward(x)) = x
  DeviceBuffer<float> back(x.size());
  cuda::rope_apply<float>(stream, y.get(), dpos.get(), dinv.get(), B, T, H, D, p.rotary_dim, true,
                          back.get());
  EXPECT_LE(rel_error(back.download(), x), 1e-5);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace engine::cuda_test
