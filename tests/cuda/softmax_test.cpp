// kernels/cuda/softmax.cu against the CPU reference (kernels/cpu/softmax.cpp): forward and backward over the
// last dim, short to vocabulary-long rows (C = 152064), vector and scalar paths, rows with -inf entries (a
// mask), in place, and bitwise repeatable. Error norm and tolerances: cuda_test_support.hpp (fp32 1e-5,
// bf16 1e-2).
//
// Reference precision: bf16 runs are compared with the CPU reference in fp32 on the rounded inputs, as
// everywhere. fp32 runs are compared with the CPU reference's double instantiation on the same inputs: the
// fp32 reference sums a 152k row in 8 lanes of 19k sequential adds (and the backward's dot in one running
// sum), whose own rounding error (~3e-6 relative, one sigma) would use up most of the 1e-5 budget and say
// nothing about the kernel.
#include "kernels/cuda/softmax.cuh"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/softmax.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "tests/cuda/cuda_test_support.hpp"
#include "tests/cuda/storage_type.hpp"

namespace engine::cuda_test {
namespace {

struct Shape {
  int64_t N, C;
};
const Shape kShapes[] = {{1, 1}, {3, 17}, {5, 64}, {4, 1000}, {7, 4096}, {2, 32001}, {3, 152064}};

// The CPU reference for inputs stored in T: fp32 for bf16, double for fp32 (see the header comment).
template <typename T>
std::vector<float> reference_forward(cpu::ThreadPool& pool, const std::vector<float>& x, int64_t N,
                                     int64_t C) {
  std::vector<float> y(x.size());
  if constexpr (kIsBf16<T>) {
    cpu::softmax_forward<float>(pool, x.data(), y.data(), N, C);
  } else {
    const std::vector<double> xd(x.begin(), x.end());
    std::vector<double> yd(x.size());
    cpu::softmax_forward<double>(pool, xd.data(), yd.data(), N, C);
    y.assign(yd.begin(), yd.end());
  }
  return y;
}
template <typename T>
std::vector<float> reference_backward(cpu::ThreadPool& pool, const std::vector<float>& dy,
                                      const std::vector<float>& y, int64_t N, int64_t C) {
  std::vector<float> dx(y.size());
  if constexpr (kIsBf16<T>) {
    cpu::softmax_backward<float>(pool, dy.data(), y.data(), dx.data(), N, C);
  } else {
    const std::vector<double> dyd(dy.begin(), dy.end()), yd(y.begin(), y.end());
    std::vector<double> dxd(y.size());
    cpu::softmax_backward<double>(pool, dyd.data(), yd.data(), dxd.data(), N, C);
    dx.assign(dxd.begin(), dxd.end());
  }
  return dx;
}

template <typename T>
class SoftmaxTest : public ::testing::Test {
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
TYPED_TEST_SUITE(SoftmaxTest, StorageTypes);

TYPED_TEST(SoftmaxTest, ForwardAndBackwardMatchCpu) {
  using T = TypeParam;
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(::testing::Message() << "N=" << s.N << " C=" << s.C);
    const auto n = static_cast<size_t>(s.N * s.C);
    const auto x = as_stored<T>(random_values(n, 1 + s.C, -8.0f, 8.0f));
    const std::vector<float> y_ref = reference_forward<T>(this->pool_, x, s.N, s.C);
    DeviceBuffer<T> dx_in(to_storage<T>(x)), y(n);
    cuda::softmax_forward<T>(this->stream_, dx_in.get(), y.get(), s.N, s.C);
    EXPECT_LE(rel_error(to_float<T>(y.download()), y_ref), tolerance<T>()) << "y";

    // backward on the stored probabilities
    const auto p = as_stored<T>(y_ref);
    const auto dy = as_stored<T>(random_values(n, 2 + s.C));
    const std::vector<float> dx_ref = reference_backward<T>(this->pool_, dy, p, s.N, s.C);
    DeviceBuffer<T> dp(to_storage<T>(p)), ddy(to_storage<T>(dy)), dx(n);
    cuda::softmax_backward<T>(this->stream_, ddy.get(), dp.get(), dx.get(), s.N, s.C);
    if (s.C == 1) {
      // one element: y = 1 and dx = dy - dy = 0 exactly on both sides (rel_error needs a nonzero reference)
      for (float v : to_float<T>(dx.download())) EXPECT_EQ(v, 0.0f);
    } else {
      EXPECT_LE(rel_error(to_float<T>(dx.download()), dx_ref), tolerance<T>()) << "dx";
    }
  }
}

TYPED_TEST(SoftmaxTest, MaskedRowsAndInPlace) {
  using T = TypeParam;
  const int64_t N = 6, C = 3000;
  auto x = as_stored<T>(random_values(N * C, 41, -5.0f, 5.0f));
  for (int64_t n = 0; n < N; ++n)  // a causal-style mask: row n keeps its first 500 (n + 1) entries
    for (int64_t c = 500 * (n + 1); c < C; ++c) x[static_cast<size_t>(n * C + c)] = -INFINITY;
  x[0] = -INFINITY;  // and a masked entry before the row's maximum
  const std::vector<float> y_ref = reference_forward<T>(this->pool_, x, N, C);
  DeviceBuffer<T> xy(to_storage<T>(x));
  cuda::softmax_forward<T>(this->stream_, xy.get(), xy.get(), N, C);  // in place
  const std::vector<float> got = to_float<T>(xy.download());
  EXPECT_LE(rel_error(got, y_ref), tolerance<T>());
  for (size_t i = 0; i < got.size(); ++i)
    if (std::isinf(x[i])) {
      ASSERT_EQ(got[i], 0.0f) << "masked entry " << i;
    }
}

TYPED_TEST(SoftmaxTest, BitwiseRepeatable) {
  using T = TypeParam;
  const int64_t N = 4, C = 152064;
  const auto x = to_storage<T>(random_values(N * C, 51, -10.0f, 10.0f));
  DeviceBuffer<T> dx(x), y1(N * C), y2(N * C);
  cuda::softmax_forward<T>(this->stream_, dx.get(), y1.get(), N, C);
  cuda::softmax_forward<T>(this->stream_, dx.get(), y2.get(), N, C);
  const auto a = y1.download(), b = y2.download();
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(T)), 0);
}

}  // namespace
}  // namespace engine::cuda_test
