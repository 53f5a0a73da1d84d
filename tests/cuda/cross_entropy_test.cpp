// kernels/cuda/cross_entropy.cu against the CPU reference (kernels/cpu/cross_entropy.cpp): row losses and
// lse with ignored rows, Qwen's V = 152064, odd V (scalar path), chunked calls through row offsets, the
// backward out of place and in place (dlogits == logits) with dloss read on the device, and sum_scaled.
// Error norm and tolerances: cuda_test_support.hpp (fp32 1e-5, bf16 1e-2 for dlogits stored in T). lse,
// row losses and the loss are fp32 from the same stored logits on both sides, so 1e-5 whatever T is.
#include "kernels/cuda/cross_entropy.cuh"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/cross_entropy.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "tests/cuda/cuda_test_support.hpp"
#include "tests/cuda/storage_type.hpp"

namespace engine::cuda_test {
namespace {

constexpr int64_t kIgnore = -100;

struct Shape {
  int64_t R, V;
};
const Shape kShapes[] = {{6, 7}, {5, 1000}, {3, 1001}, {9, 32000}, {4, 152064}};

// Labels in [0, V), every third row (starting at row 1) ignored.
std::vector<int32_t> make_labels(int64_t R, int64_t V, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int64_t> dist(0, V - 1);
  std::vector<int32_t> labels(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r)
    labels[static_cast<size_t>(r)] =
        r % 3 == 1 ? static_cast<int32_t>(kIgnore) : static_cast<int32_t>(dist(gen));
  labels.back() = static_cast<int32_t>(V - 1);  // the last class too (the end of the last vector)
  return labels;
}

struct Reference {
  std::vector<float> row_loss, lse;
  double total = 0;  // sum of row losses
};
Reference cpu_forward(cpu::ThreadPool& pool, const std::vector<float>& z, const std::vector<int32_t>& labels,
                      int64_t R, int64_t V) {
  Reference ref{std::vector<float>(static_cast<size_t>(R)), std::vector<float>(static_cast<size_t>(R)), 0.0};
  ref.total =
      cpu::cross_entropy_forward<float>(pool, z.data(), labels.data(), R, V, kIgnore, 1.0, ref.lse.data());
  for (int64_t r = 0; r < R; ++r) {  // one row at a time: the reference's loss of that row
    float lse_r = 0;
    ref.row_loss[static_cast<size_t>(r)] = static_cast<float>(cpu::cross_entropy_forward<float>(
        pool, z.data() + r * V, labels.data() + r, 1, V, kIgnore, 1.0, &lse_r));
  }
  return ref;
}

int64_t count_valid(const std::vector<int32_t>& labels) {
  int64_t n = 0;
  for (int32_t l : labels) n += l != kIgnore;
  return n;
}

template <typename T>
class CrossEntropyTest : public ::testing::Test {
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
TYPED_TEST_SUITE(CrossEntropyTest, StorageTypes);

TYPED_TEST(CrossEntropyTest, ForwardBackwardAndLossMatchCpu) {
  using T = TypeParam;
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(::testing::Message() << "R=" << s.R << " V=" << s.V);
    const auto n = static_cast<size_t>(s.R * s.V);
    const auto z = as_stored<T>(random_values(n, 1 + s.V, -6.0f, 6.0f));
    const auto labels = make_labels(s.R, s.V, 2 + s.V);
    const Reference ref = cpu_forward(this->pool_, z, labels, s.R, s.V);

    DeviceBuffer<T> dz(to_storage<T>(z));
    DeviceBuffer<int32_t> dlabels(labels);
    DeviceBuffer<float> row_loss(s.R), lse(s.R), loss(1);
    cuda::cross_entropy_forward<T>(this->stream_, dz.get(), dlabels.get(), s.R, s.V, kIgnore, row_loss.get(),
                                   lse.get());
    const auto got_loss = row_loss.download(), got_lse = lse.download();
    EXPECT_LE(rel_error(got_loss, ref.row_loss), kStatTolerance) << "row_loss";
    EXPECT_LE(rel_error(got_lse, ref.lse), kStatTolerance) << "lse";
    for (int64_t r = 0; r < s.R; ++r)
      if (labels[static_cast<size_t>(r)] == kIgnore) {
        EXPECT_EQ(got_loss[static_cast<size_t>(r)], 0.0f) << "ignored row " << r;
        EXPECT_EQ(got_lse[static_cast<size_t>(r)], 0.0f) << "ignored row " << r;
      }

    // the loss scalar: scale * sum of row losses
    const float scale = 1.0f / static_cast<float>(count_valid(labels));
    cuda::sum_scaled(this->stream_, row_loss.get(), s.R, scale, loss.get(), false);
    const double want = static_cast<double>(scale) * ref.total;
    EXPECT_NEAR(loss.download()[0], want, 1e-5 * std::abs(want)) << "loss";

    // backward: coef = dloss * scale, dloss on the device
    const float dloss_value = 0.75f;
    const float coef = dloss_value * scale;
    std::vector<float> dz_ref(n);
    cpu::cross_entropy_backward<float>(this->pool_, z.data(), labels.data(), ref.lse.data(), s.R, s.V,
                                       kIgnore, coef, dz_ref.data());
    DeviceBuffer<float> dloss(std::vector<float>{dloss_value});
    DeviceBuffer<T> dlogits(n);
    cuda::cross_entropy_backward<T>(this->stream_, dz.get(), dlabels.get(), lse.get(), s.R, s.V, kIgnore,
                                    dloss.get(), scale, dlogits.get());
    const auto got = to_float<T>(dlogits.download());
    EXPECT_LE(rel_error(got, dz_ref), tolerance<T>()) << "dlogits";
    for (int64_t r = 0; r < s.R; ++r)
      if (labels[static_cast<size_t>(r)] == kIgnore) {
        for (int64_t v = 0; v < s.V; ++v)
          ASSERT_EQ(got[static_cast<size_t>(r * s.V + v)], 0.0f) << "row " << r;
      }

    // in place, as the fused linear + CE backward does it: the logits buffer becomes dlogits
    DeviceBuffer<T> inplace(to_storage<T>(z));
    cuda::cross_entropy_backward<T>(this->stream_, inplace.get(), dlabels.get(), lse.get(), s.R, s.V, kIgnore,
                                    dloss.get(), scale, inplace.get());
    EXPECT_LE(rel_error(to_float<T>(inplace.download()), dz_ref), tolerance<T>()) << "dlogits in place";
  }
}

// Two chunks through row offsets (logits + r0 * V, labels + r0, ...), as the fused loss calls it; with an odd
// V the second chunk's logits are not 16-byte aligned (scalar path).
TYPED_TEST(CrossEntropyTest, ChunkedCallsMatchCpu) {
  using T = TypeParam;
  for (const int64_t V : {int64_t{4096}, int64_t{4097}}) {
    SCOPED_TRACE(::testing::Message() << "V=" << V);
    const int64_t R = 11, r0 = 5;
    const auto n = static_cast<size_t>(R * V);
    const auto z = as_stored<T>(random_values(n, 61 + V, -6.0f, 6.0f));
    const auto labels = make_labels(R, V, 62 + V);
    const Reference ref = cpu_forward(this->pool_, z, labels, R, V);
    const float scale = 0.125f, dloss_value = 2.0f;
    std::vector<float> dz_ref(n);
    cpu::cross_entropy_backward<float>(this->pool_, z.data(), labels.data(), ref.lse.data(), R, V, kIgnore,
                                       dloss_value * scale, dz_ref.data());

    DeviceBuffer<T> dz(to_storage<T>(z));
    DeviceBuffer<int32_t> dlabels(labels);
    DeviceBuffer<float> row_loss(R), lse(R), loss(1), dloss(std::vector<float>{dloss_value});
    const int64_t starts[2] = {0, r0}, rows[2] = {r0, R - r0};
    for (int c = 0; c < 2; ++c) {
      const int64_t s0 = starts[c];
      cuda::cross_entropy_forward<T>(this->stream_, dz.get() + s0 * V, dlabels.get() + s0, rows[c], V,
                                     kIgnore, row_loss.get() + s0, lse.get() + s0);
      // the loss accumulates chunk by chunk
      cuda::sum_scaled(this->stream_, row_loss.get() + s0, rows[c], scale, loss.get(), c > 0);
      cuda::cross_entropy_backward<T>(this->stream_, dz.get() + s0 * V, dlabels.get() + s0, lse.get() + s0,
                                      rows[c], V, kIgnore, dloss.get(), scale, dz.get() + s0 * V);
    }
    EXPECT_LE(rel_error(row_loss.download(), ref.row_loss), kStatTolerance);
    EXPECT_LE(rel_error(lse.download(), ref.lse), kStatTolerance);
    const double want = static_cast<double>(scale) * ref.total;
    EXPECT_NEAR(loss.download()[0], want, 1e-5 * std::abs(want));
    EXPECT_LE(rel_error(to_float<T>(dz.download()), dz_ref), tolerance<T>());
  }
}

// The coefficient comes from device memory at kernel time: a value written to dloss on the stream just before
// the backward is the one used.
TYPED_TEST(CrossEntropyTest, BackwardReadsDlossOnTheDevice) {
  using T = TypeParam;
  const int64_t R = 3, V = 512;
  const auto z = as_stored<T>(random_values(R * V, 71, -3.0f, 3.0f));
  const std::vector<int32_t> labels = {5, 511, 0};
  const Reference ref = cpu_forward(this->pool_, z, labels, R, V);
  std::vector<float> dz_ref(z.size());
  const float scale = 0.5f, dloss_value = -3.0f;
  cpu::cross_entropy_backward<float>(this->pool_, z.data(), labels.data(), ref.lse.data(), R, V, kIgnore,
                                     dloss_value * scale, dz_ref.data());
  DeviceBuffer<T> dz(to_storage<T>(z)), dlogits(z.size());
  DeviceBuffer<int32_t> dlabels(labels);
  DeviceBuffer<float> lse(ref.lse), dloss(std::vector<float>{1.0f});
  static float pinned_value;  // the source of an async copy must outlive it
  pinned_value = dloss_value;
  ASSERT_EQ(cudaMemcpyAsync(dloss.get(), &pinned_value, sizeof(float), cudaMemcpyHostToDevice, this->stream_),
            cudaSuccess);
  cuda::cross_entropy_backward<T>(this->stream_, dz.get(), dlabels.get(), lse.get(), R, V, kIgnore,
                                  dloss.get(), scale, dlogits.get());
  EXPECT_LE(rel_error(to_float<T>(dlogits.download()), dz_ref), tolerance<T>());
}

TEST(SumScaledTest, FixedOrderSumMatchesDoubleSum) {
  SKIP_WITHOUT_GPU();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  for (const int64_t n : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    const auto v = random_values(static_cast<size_t>(n), 80 + n, 0.0f, 12.0f);
    double sum = 0;
    for (float x : v) sum += x;
    const float scale = 1.0f / 3.0f;
    DeviceBuffer<float> dv(v), out(1), out2(1), acc(std::vector<float>{1.5f});
    cuda::sum_scaled(stream, dv.get(), n, scale, out.get(), false);
    cuda::sum_scaled(stream, dv.get(), n, scale, out2.get(), false);
    cuda::sum_scaled(stream, dv.get(), n, scale, acc.get(), true);
    const double want = static_cast<double>(scale) * sum;
    const float got = out.download()[0], got2 = out2.download()[0];
    EXPECT_NEAR(got, want, 1e-6 * want);
    EXPECT_EQ(std::memcmp(&got, &got2, sizeof(float)), 0) << "bitwise repeatable";
    EXPECT_NEAR(acc.download()[0], 1.5 + want, 1e-6 * (1.5 + want)) << "accumulate";
  }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace engine::cuda_test
