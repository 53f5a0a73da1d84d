// cuBLASLt GEMM (kernels/cuda/gemm.cpp) against the OpenBLAS reference (kernels/cpu/gemm.hpp,
// cpu::gemm<float>) on random, never-zero inputs: all four transpose combinations, odd sizes (1x1x1,
// 17x33x65, 257x129x511), padded leading dimensions, beta = 0 on a NaN-poisoned C (C must not be read) and
// beta != 0, the bias epilogue, strided batches and batches that broadcast A or B (stride 0), K = 0, and the
// type pairs f32 -> f32, bf16 -> bf16 and bf16 -> f32. bf16 inputs are rounded to bf16 first and the
// reference runs in fp32 on the rounded values. Error norm: rel_error (cuda_test_support.hpp). Tolerances:
// f32 output 1e-5 (fp32 inputs: true fp32, no TF32; bf16 inputs: the products are exact in fp32, only the
// summation order differs), bf16 output 1e-2. Elements outside the (M, N) windows (leading-dimension padding)
// must be left untouched, bit for bit.
#include "kernels/cuda/gemm.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/core/error.hpp"
#include "kernels/cpu/gemm.hpp"
#include "tests/cuda/cuda_test_support.hpp"

namespace engine::cuda {
namespace {

using cuda_test::DeviceBuffer;
using cuda_test::random_values;
using cuda_test::rel_error;

template <typename T>
std::vector<T> to_type(const std::vector<float>& v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return cuda_test::to_bf16(v);
}

template <typename T>
std::vector<float> to_float(const std::vector<T>& v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return cuda_test::from_bf16(v);
}

// What a buffer of T holds once uploaded: floats rounded to T.
template <typename T>
std::vector<float> stored_as(const std::vector<float>& v) {
  return to_float(to_type<T>(v));
}

enum class Broadcast { None, A, B };

struct Case {
  bool trans_a = false, trans_b = false;
  int64_t M = 1, N = 1, K = 1;
  int64_t batch = 1;
  Broadcast broadcast = Broadcast::None;
  bool bias = false;
  float alpha = 1.0f, beta = 0.0f;
  int64_t pad = 0;  // added to every leading dimension
};

std::string describe(const Case& c) {
  return "M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         " trans_a=" + std::to_string(c.trans_a) + " trans_b=" + std::to_string(c.trans_b) +
         " batch=" + std::to_string(c.batch) + " broadcast=" + std::to_string(int(c.broadcast)) +
         " bias=" + std::to_string(c.bias) + " beta=" + std::to_string(c.beta) +
         " pad=" + std::to_string(c.pad);
}

class GemmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
    runner_ = std::make_unique<GemmRunner>();
  }
  void TearDown() override {
    runner_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  // Runs one case on the GPU and on the CPU; returns rel_error over the (M, N) windows and checks that the
  // padding is untouched.
  template <typename TAB, typename TC>
  double run_case(const Case& c, uint64_t seed) {
    const int64_t lda = (c.trans_a ? c.M : c.K) + c.pad, a_rows = c.trans_a ? c.K : c.M;
    const int64_t ldb = (c.trans_b ? c.K : c.N) + c.pad, b_rows = c.trans_b ? c.N : c.K;
    const int64_t ldc = c.N + c.pad;
    const int64_t size_a = std::max<int64_t>(1, a_rows * lda), size_b = std::max<int64_t>(1, b_rows * ldb);
    const int64_t size_c = c.M * ldc;
    const int64_t stride_a = c.broadcast == Broadcast::A ? 0 : size_a;
    const int64_t stride_b = c.broadcast == Broadcast::B ? 0 : size_b;
    const int64_t stride_c = size_c;
    const int64_t n_a = c.broadcast == Broadcast::A ? size_a : c.batch * size_a;
    const int64_t n_b = c.broadcast == Broadcast::B ? size_b : c.batch * size_b;
    const int64_t n_c = c.batch * size_c;

    const std::vector<float> a = stored_as<TAB>(random_values(size_t(n_a), seed));
    const std::vector<float> b = stored_as<TAB>(random_values(size_t(n_b), seed + 1));
    const std::vector<float> bias = stored_as<TC>(random_values(size_t(c.N), seed + 2));
    // beta = 0: C starts as NaN everywhere, so reading it would show.
    const std::vector<float> c0 =
        c.beta != 0.0f ? stored_as<TC>(random_values(size_t(n_c), seed + 3))
                       : std::vector<float>(size_t(n_c), std::numeric_limits<float>::quiet_NaN());

    // Reference: cpu::gemm per batch (from zeros when beta = 0), then the bias on every row.
    std::vector<float> ref = c.beta != 0.0f ? c0 : std::vector<float>(size_t(n_c), 0.0f);
    for (int64_t i = 0; i < c.batch; ++i) {
      cpu::gemm<float>(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, a.data() + i * stride_a, lda,
                       b.data() + i * stride_b, ldb, c.beta, ref.data() + i * stride_c, ldc);
      if (c.bias)
        for (int64_t r = 0; r < c.M; ++r)
          for (int64_t j = 0; j < c.N; ++j) ref[size_t(i * stride_c + r * ldc + j)] += bias[size_t(j)];
    }

    DeviceBuffer<TAB> d_a(to_type<TAB>(a)), d_b(to_type<TAB>(b));
    DeviceBuffer<TC> d_bias(to_type<TC>(bias)), d_c(to_type<TC>(c0));
    // The uploads ran on the legacy default stream; the GEMM runs on a non-blocking stream.
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    gemm<TAB, TC>(*runner_, stream_, c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, d_a.get(), lda, d_b.get(),
                  ldb, c.beta, d_c.get(), ldc, c.bias ? d_bias.get() : nullptr, c.batch, stride_a, stride_b,
                  stride_c);
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    const std::vector<TC> got_raw = d_c.download();
    const std::vector<TC> c0_raw = to_type<TC>(c0);
    const std::vector<float> got = to_float(got_raw);

    std::vector<float> got_window, ref_window;
    size_t padding_changed = 0;
    for (int64_t i = 0; i < c.batch; ++i)
      for (int64_t r = 0; r < c.M; ++r)
        for (int64_t j = 0; j < ldc; ++j) {
          const size_t at = size_t(i * stride_c + r * ldc + j);
          if (j < c.N) {
            got_window.push_back(got[at]);
            ref_window.push_back(ref[at]);
          } else if (std::memcmp(&got_raw[at], &c0_raw[at], sizeof(TC)) != 0) {
            ++padding_changed;
          }
        }
    EXPECT_EQ(padding_changed, 0u) << describe(c) << ": elements outside the (M, N) windows were written";
    return rel_error(got_window, ref_window);
  }

  template <typename TAB, typename TC>
  void expect_case(const Case& c, uint64_t seed, double tol) {
    const double err = run_case<TAB, TC>(c, seed);
    EXPECT_LE(err, tol) << describe(c);
  }

  cudaStream_t stream_ = nullptr;
  std::unique_ptr<GemmRunner> runner_;
};

constexpr double kF32 = 1e-5, kBF16 = 1e-2;

const int64_t kShapes[][3] = {{1, 1, 1}, {17, 33, 65}, {257, 129, 511}, {64, 128, 256}};

TEST_F(GemmTest, F32AllTransposesOddSizes) {
  uint64_t seed = 1;
  for (const auto& s : kShapes)
    for (int t = 0; t < 4; ++t)
      for (float beta : {0.0f, 0.5f}) {
        Case c;
        c.M = s[0], c.N = s[1], c.K = s[2];
        c.trans_a = t & 1, c.trans_b = t & 2;
        c.alpha = 1.25f, c.beta = beta;
        expect_case<float, float>(c, seed++, kF32);
      }
}

TEST_F(GemmTest, Bf16AllTransposesOddSizes) {
  uint64_t seed = 100;
  for (const auto& s : kShapes)
    for (int t = 0; t < 4; ++t)
      for (float beta : {0.0f, 1.0f}) {
        Case c;
        c.M = s[0], c.N = s[1], c.K = s[2];
        c.trans_a = t & 1, c.trans_b = t & 2;
        c.beta = beta;
        expect_case<__nv_bfloat16, __nv_bfloat16>(c, seed, kBF16);
        expect_case<__nv_bfloat16, float>(c, seed++, kF32);
      }
}

TEST_F(GemmTest, PaddedLeadingDimensions) {
  uint64_t seed = 200;
  for (int t = 0; t < 4; ++t)
    for (int64_t pad : {1, 3, 8}) {
      Case c;
      c.M = 33, c.N = 17, c.K = 65;
      c.trans_a = t & 1, c.trans_b = t & 2;
      c.pad = pad;
      c.beta = 0.75f;
      expect_case<float, float>(c, seed, kF32);
      expect_case<__nv_bfloat16, __nv_bfloat16>(c, seed, kBF16);
      expect_case<__nv_bfloat16, float>(c, seed++, kF32);
    }
}

TEST_F(GemmTest, BiasEpilogue) {
  uint64_t seed = 300;
  for (const auto& s : kShapes)
    for (int t = 0; t < 4; ++t)
      for (float beta : {0.0f, 1.0f}) {
        Case c;
        c.M = s[0], c.N = s[1], c.K = s[2];
        c.trans_a = t & 1, c.trans_b = t & 2;
        c.bias = true, c.beta = beta;
        expect_case<float, float>(c, seed, kF32);
        expect_case<__nv_bfloat16, __nv_bfloat16>(c, seed, kBF16);
        expect_case<__nv_bfloat16, float>(c, seed++, kF32);
      }
}

TEST_F(GemmTest, StridedAndBroadcastBatches) {
  uint64_t seed = 400;
  for (Broadcast bc : {Broadcast::None, Broadcast::A, Broadcast::B})
    for (int t = 0; t < 4; ++t)
      for (bool bias : {false, true}) {
        Case c;
        c.M = 17, c.N = 33, c.K = 65, c.batch = 5;
        c.trans_a = t & 1, c.trans_b = t & 2;
        c.broadcast = bc, c.bias = bias, c.beta = bias ? 0.0f : 0.5f;
        c.pad = t == 3 ? 3 : 0;
        expect_case<float, float>(c, seed, kF32);
        expect_case<__nv_bfloat16, __nv_bfloat16>(c, seed, kBF16);
        expect_case<__nv_bfloat16, float>(c, seed++, kF32);
      }
}

TEST_F(GemmTest, EmptyInnerDimensionGivesBetaCPlusBias) {
  uint64_t seed = 500;
  for (bool bias : {false, true})
    for (float beta : {0.0f, 0.5f}) {
      Case c;
      c.M = 19, c.N = 23, c.K = 0, c.batch = 3;
      c.bias = bias, c.beta = beta, c.pad = 2;
      expect_case<float, float>(c, seed, kF32);
      expect_case<__nv_bfloat16, __nv_bfloat16>(c, seed, kBF16);
      expect_case<__nv_bfloat16, float>(c, seed++, kF32);
    }
}

TEST_F(GemmTest, EmptyOutputsEnqueueNothing) {
  DeviceBuffer<float> c(4);
  auto f32 = gemm<float, float>;
  EXPECT_NO_THROW(f32(*runner_, stream_, false, false, 0, 4, 4, 1.0f, nullptr, 4, nullptr, 4, 0.0f, c.get(),
                      4, nullptr, 1, 0, 0, 0));
  EXPECT_NO_THROW(f32(*runner_, stream_, false, false, 4, 0, 4, 1.0f, nullptr, 4, nullptr, 1, 0.0f, c.get(),
                      1, nullptr, 1, 0, 0, 0));
  EXPECT_NO_THROW(f32(*runner_, stream_, false, false, 2, 2, 2, 1.0f, nullptr, 2, nullptr, 2, 0.0f, c.get(),
                      2, nullptr, 0, 0, 0, 0));
  EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  EXPECT_EQ(runner_->cached_plans(), 0u);
  for (float v : c.download()) EXPECT_TRUE(std::isnan(v));  // still the poison
}

TEST_F(GemmTest, BadArgumentsAreEngineErrors) {
  DeviceBuffer<float> a(64), b(64), c(64);
  auto f32 = gemm<float, float>;
  // lda < K for a row-major (M, K) A.
  EXPECT_THROW(f32(*runner_, stream_, false, false, 4, 4, 4, 1.0f, a.get(), 3, b.get(), 4, 0.0f, c.get(), 4,
                   nullptr, 1, 0, 0, 0),
               engine::Error);
  // ldc < N.
  EXPECT_THROW(f32(*runner_, stream_, false, false, 4, 4, 4, 1.0f, a.get(), 4, b.get(), 4, 0.0f, c.get(), 3,
                   nullptr, 1, 0, 0, 0),
               engine::Error);
  // Negative size.
  EXPECT_THROW(f32(*runner_, stream_, false, false, -1, 4, 4, 1.0f, a.get(), 4, b.get(), 4, 0.0f, c.get(), 4,
                   nullptr, 1, 0, 0, 0),
               engine::Error);
  // Overlapping batched outputs.
  EXPECT_THROW(f32(*runner_, stream_, false, false, 2, 2, 2, 1.0f, a.get(), 2, b.get(), 2, 0.0f, c.get(), 2,
                   nullptr, 2, 4, 4, 3),
               engine::Error);
  // f32 inputs with a bf16 output.
  GemmDesc d;
  d.M = d.N = d.K = 2;
  d.lda = d.ldb = d.ldc = 2;
  d.ab_type = GemmType::F32, d.c_type = GemmType::BF16;
  try {
    runner_->run(stream_, d, a.get(), b.get(), c.get());
    ADD_FAILURE() << "f32 x f32 -> bf16 was accepted";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("f32 x f32 -> bf16"), std::string::npos) << e.what();
  }
  // A bias of another type than C.
  d.ab_type = d.c_type = GemmType::F32;
  d.bias = a.get(), d.bias_type = GemmType::BF16;
  try {
    runner_->run(stream_, d, a.get(), b.get(), c.get());
    ADD_FAILURE() << "a bf16 bias with an f32 output was accepted";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cast the bias to f32"), std::string::npos) << e.what();
  }
}

TEST_F(GemmTest, PlansAreCachedAndResultsRepeatBitwise) {
  const int64_t M = 96, N = 80, K = 1000;
  const std::vector<__nv_bfloat16> a = cuda_test::to_bf16(random_values(size_t(M * K), 7));
  const std::vector<__nv_bfloat16> b = cuda_test::to_bf16(random_values(size_t(K * N), 8));
  DeviceBuffer<__nv_bfloat16> d_a(a), d_b(b);
  DeviceBuffer<__nv_bfloat16> c1(size_t(M * N)), c2(size_t(M * N));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  gemm<__nv_bfloat16, __nv_bfloat16>(*runner_, stream_, false, true, M, N, K, 1.0f, d_a.get(), K, d_b.get(),
                                     K, 0.0f, c1.get(), N);
  const size_t plans = runner_->cached_plans();
  EXPECT_EQ(plans, 1u);
  gemm<__nv_bfloat16, __nv_bfloat16>(*runner_, stream_, false, true, M, N, K, 1.0f, d_a.get(), K, d_b.get(),
                                     K, 0.0f, c2.get(), N);
  EXPECT_EQ(runner_->cached_plans(), plans);  // same shape, same alignment: the same plan
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  const std::vector<__nv_bfloat16> r1 = c1.download(), r2 = c2.download();
  EXPECT_EQ(std::memcmp(r1.data(), r2.data(), r1.size() * sizeof(__nv_bfloat16)), 0);
}

TEST(GemmSupports, F32InputsWithBf16OutputAreRefused) {
  std::string why;
  EXPECT_TRUE(GemmRunner::supports(GemmType::F32, GemmType::F32));
  EXPECT_TRUE(GemmRunner::supports(GemmType::BF16, GemmType::BF16));
  EXPECT_TRUE(GemmRunner::supports(GemmType::BF16, GemmType::F32));
  EXPECT_FALSE(GemmRunner::supports(GemmType::F32, GemmType::BF16, &why));
  EXPECT_NE(why.find("cast"), std::string::npos) << why;
}

}  // namespace
}  // namespace engine::cuda
