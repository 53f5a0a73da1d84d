// kernels/cuda/dropout.cu against kernels/cpu/dropout.hpp: the same keep decision for every element (the
// mask is a pure function of (seed, index) on both devices), f32 outputs bitwise equal to the CPU's, bf16
// outputs within bf16 tolerance with exactly the CPU's zeros; both use engine/core/splitmix64.hpp.
#include "kernels/cuda/dropout.cuh"

#include <gtest/gtest.h>

#include <vector>

#include "engine/core/splitmix64.hpp"
#include "kernels/cpu/dropout.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "tests/cuda/cuda_test_support.hpp"

namespace {

using engine::cuda_test::DeviceBuffer;
using engine::cuda_test::from_bf16;
using engine::cuda_test::random_values;
using engine::cuda_test::rel_error;
using engine::cuda_test::round_to_bf16;
using engine::cuda_test::to_bf16;

TEST(CudaDropout, SplitmixIsThePublishedOne) {
  // engine/core/splitmix64.hpp is the one copy the CPU and CUDA kernels share; pin its output.
  static_assert(engine::splitmix64(0) == 0xe220a8397b1dcdafULL);  // the published first output for seed 0
}

TEST(CudaDropout, SameMaskAsCpu) {
  SKIP_WITHOUT_GPU();
  engine::cpu::ThreadPool pool(2);
  for (int64_t n : {1, 1000, 262147}) {
    for (double p : {0.0, 0.1, 0.5, 0.9}) {
      for (uint64_t seed : {uint64_t{0}, uint64_t{1234567}, ~uint64_t{0}}) {
        const auto x = random_values(n, 17);
        std::vector<float> want(n);
        engine::cpu::dropout_apply<float>(pool, x.data(), want.data(), n, p, seed);
        DeviceBuffer<float> gx(x), gy(n);
        engine::cuda::dropout_apply<float>(nullptr, gx.get(), gy.get(), n, p, seed);
        const auto got = gy.download();
        ASSERT_EQ(got, want) << "n " << n << " p " << p << " seed " << seed;

        const auto xr = round_to_bf16(x);
        engine::cpu::dropout_apply<float>(pool, xr.data(), want.data(), n, p, seed);
        DeviceBuffer<__nv_bfloat16> bx(to_bf16(x)), by(n);
        engine::cuda::dropout_apply<__nv_bfloat16>(nullptr, bx.get(), by.get(), n, p, seed);
        const auto gotb = from_bf16(by.download());
        int64_t kept = 0;
        for (int64_t i = 0; i < n; ++i) {
          const bool keep = engine::cpu::dropout_keep(seed, static_cast<uint64_t>(i), p);
          ASSERT_EQ(gotb[i] != 0.0f, keep) << i;  // inputs are never zero
          kept += keep;
        }
        EXPECT_LE(rel_error(gotb, want), 1e-2);
        if (n > 100000) {
          EXPECT_NEAR(double(kept) / n, 1.0 - p, 0.01);
        }
      }
    }
  }
}

TEST(CudaDropout, InPlaceAndPOne) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 5000;
  engine::cpu::ThreadPool pool(2);
  const auto x = random_values(n, 3);
  std::vector<float> want(n);
  engine::cpu::dropout_apply<float>(pool, x.data(), want.data(), n, 0.3, 99);
  DeviceBuffer<float> g(x);
  engine::cuda::dropout_apply<float>(nullptr, g.get(), g.get(), n, 0.3, 99);
  EXPECT_EQ(g.download(), want);
  DeviceBuffer<float> out(n);
  engine::cuda::dropout_apply<float>(nullptr, g.get(), out.get(), n, 1.0, 99);
  EXPECT_EQ(out.download(), std::vector<float>(n, 0.0f));
}

}  // namespace
