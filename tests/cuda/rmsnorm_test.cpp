// kernels/cuda/rmsnorm.cu against the CPU reference (kernels/cpu/rmsnorm.cpp): forward (y, rstd), backward
// (dx, dw and the frozen-weight path without dw), the fused residual add, bitwise repeatable dw. Shapes cover
// a warp per row (C <= 1024) and a block per row, the vector and the scalar paths (C not a multiple of the
// 16-byte vector), and N not a multiple of the dw row block. Error norm and tolerances: cuda_test_support.hpp
// (fp32 1e-5, bf16 1e-2; rstd is fp32 from the same stored inputs on both sides, so 1e-5 for bf16 too).
#include "kernels/cuda/rmsnorm.cuh"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/rmsnorm.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "tests/cuda/cuda_test_support.hpp"
#include "tests/cuda/storage_type.hpp"

namespace engine::cuda_test {
namespace {

struct Shape {
  int64_t N, C;
};
// warp per row: C <= 1024; vector path: C % 8 == 0 (bf16) or C % 4 == 0 (fp32); dw row block is 32 rows.
const Shape kShapes[] = {{1, 64},   {7, 65},   {33, 1000}, {100, 1024}, {37, 1025},
                         {70, 896}, {9, 4100}, {64, 3584}, {5, 8192}};
constexpr float kEps = 1e-6f;

template <typename T>
class RmsnormTest : public ::testing::Test {
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
TYPED_TEST_SUITE(RmsnormTest, StorageTypes);

// CPU forward + backward on the stored (for bf16: rounded) inputs.
struct Reference {
  std::vector<float> y, rstd, dx, dw;
};
Reference cpu_reference(cpu::ThreadPool& pool, const std::vector<float>& x, const std::vector<float>& w,
                        const std::vector<float>& dy, int64_t N, int64_t C) {
  Reference r{std::vector<float>(x.size()), std::vector<float>(N), std::vector<float>(x.size()),
              std::vector<float>(C)};
  cpu::rmsnorm_forward<float>(pool, x.data(), w.data(), N, C, static_cast<double>(kEps), r.y.data(),
                              r.rstd.data());
  cpu::rmsnorm_backward<float>(pool, dy.data(), x.data(), w.data(), r.rstd.data(), N, C, r.dx.data(),
                               r.dw.data());
  return r;
}

TYPED_TEST(RmsnormTest, ForwardAndBackwardMatchCpu) {
  using T = TypeParam;
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(::testing::Message() << "N=" << s.N << " C=" << s.C);
    const auto n = static_cast<size_t>(s.N * s.C);
    const auto x = as_stored<T>(random_values(n, 1 + s.C, -2.0f, 2.0f));
    const auto w = as_stored<T>(random_values(s.C, 2 + s.C, 0.5f, 1.5f));
    const auto dy = as_stored<T>(random_values(n, 3 + s.C));
    const Reference ref = cpu_reference(this->pool_, x, w, dy, s.N, s.C);

    DeviceBuffer<T> dx_in(to_storage<T>(x)), dw_in(to_storage<T>(w)), ddy(to_storage<T>(dy));
    DeviceBuffer<T> y(n), dx(n), dw(s.C);
    DeviceBuffer<float> rstd(s.N);
    DeviceBuffer<float> ws(cuda::rmsnorm_backward_workspace_bytes(s.N, s.C) / sizeof(float));
    cuda::rmsnorm_forward<T>(this->stream_, dx_in.get(), dw_in.get(), s.N, s.C, kEps, y.get(), rstd.get());
    cuda::rmsnorm_backward<T>(this->stream_, ddy.get(), dx_in.get(), dw_in.get(), rstd.get(), s.N, s.C,
                              dx.get(), dw.get(), ws.get());
    EXPECT_LE(rel_error(to_float<T>(y.download()), ref.y), tolerance<T>()) << "y";
    EXPECT_LE(rel_error(rstd.download(), ref.rstd), kStatTolerance) << "rstd";
    EXPECT_LE(rel_error(to_float<T>(dx.download()), ref.dx), tolerance<T>()) << "dx";
    EXPECT_LE(rel_error(to_float<T>(dw.download()), ref.dw), tolerance<T>()) << "dw";

    // frozen weight: no dw, no workspace; dx unchanged
    DeviceBuffer<T> dx2(n);
    cuda::rmsnorm_backward<T>(this->stream_, ddy.get(), dx_in.get(), dw_in.get(), rstd.get(), s.N, s.C,
                              dx2.get(), nullptr, nullptr);
    EXPECT_LE(rel_error(to_float<T>(dx2.download()), ref.dx), tolerance<T>()) << "dx without dw";
  }
}

TYPED_TEST(RmsnormTest, InPlaceForwardMatchesCpu) {
  using T = TypeParam;
  const int64_t N = 19, C = 2048;
  const auto x = as_stored<T>(random_values(N * C, 11, -2.0f, 2.0f));
  const auto w = as_stored<T>(random_values(C, 12, 0.5f, 1.5f));
  const Reference ref = cpu_reference(this->pool_, x, w, x, N, C);
  DeviceBuffer<T> xy(to_storage<T>(x)), dw_in(to_storage<T>(w));
  DeviceBuffer<float> rstd(N);
  cuda::rmsnorm_forward<T>(this->stream_, xy.get(), dw_in.get(), N, C, kEps, xy.get(), rstd.get());
  EXPECT_LE(rel_error(to_float<T>(xy.download()), ref.y), tolerance<T>());
}

TYPED_TEST(RmsnormTest, BackwardIsBitwiseRepeatable) {
  using T = TypeParam;
  const int64_t N = 1000, C = 4096;  // 32 row blocks (the last one partial)
  const auto x = as_stored<T>(random_values(N * C, 21, -2.0f, 2.0f));
  const auto w = as_stored<T>(random_values(C, 22, 0.5f, 1.5f));
  const auto dy = as_stored<T>(random_values(N * C, 23));
  DeviceBuffer<T> dx_in(to_storage<T>(x)), dw_in(to_storage<T>(w)), ddy(to_storage<T>(dy));
  DeviceBuffer<T> y(N * C);
  DeviceBuffer<float> rstd(N);
  DeviceBuffer<float> ws(cuda::rmsnorm_backward_workspace_bytes(N, C) / sizeof(float));
  cuda::rmsnorm_forward<T>(this->stream_, dx_in.get(), dw_in.get(), N, C, kEps, y.get(), rstd.get());
  std::vector<std::vector<T>> dws, dxs;
  for (int run = 0; run < 3; ++run) {
    DeviceBuffer<T> dx(N * C), dw(C);  // fresh NaN-poisoned outputs each run
    cudaMemsetAsync(ws.get(), 0xFF, ws.size() * sizeof(float), this->stream_);
    cuda::rmsnorm_backward<T>(this->stream_, ddy.get(), dx_in.get(), dw_in.get(), rstd.get(), N, C, dx.get(),
                              dw.get(), ws.get());
    dws.push_back(dw.download());
    dxs.push_back(dx.download());
  }
  for (int run = 1; run < 3; ++run) {
    EXPECT_EQ(std::memcmp(dws[0].data(), dws[run].data(), C * sizeof(T)), 0) << "dw differs in run " << run;
    EXPECT_EQ(std::memcmp(dxs[0].data(), dxs[run].data(), N * C * sizeof(T)), 0)
        << "dx differs in run " << run;
  }
  // and the repeatable result is the right one
  const Reference ref = cpu_reference(this->pool_, x, w, dy, N, C);
  EXPECT_LE(rel_error(to_float<T>(dws[0]), ref.dw), tolerance<T>());
}

// add_rmsnorm_forward = rmsnorm_forward(T(x + residual)); its backward is the plain backward on sum_out.
TYPED_TEST(RmsnormTest, FusedResidualAddMatchesCpu) {
  using T = TypeParam;
  const Shape shapes[] = {{3, 64}, {17, 1000}, {40, 3584}, {6, 5000}};
  for (const Shape& s : shapes) {
    for (const bool in_place : {false, true}) {  // in place: sum_out is the residual buffer
      SCOPED_TRACE(::testing::Message() << "N=" << s.N << " C=" << s.C << " in_place=" << in_place);
      const auto n = static_cast<size_t>(s.N * s.C);
      const auto x = as_stored<T>(random_values(n, 31 + s.C));
      const auto res = as_stored<T>(random_values(n, 32 + s.C, -3.0f, 3.0f));
      const auto w = as_stored<T>(random_values(s.C, 33 + s.C, 0.5f, 1.5f));
      const auto dy = as_stored<T>(random_values(n, 34 + s.C));
      std::vector<float> sum(n);
      for (size_t i = 0; i < n; ++i) sum[i] = x[i] + res[i];
      sum = as_stored<T>(sum);
      const Reference ref = cpu_reference(this->pool_, sum, w, dy, s.N, s.C);

      DeviceBuffer<T> dx_in(to_storage<T>(x)), dres(to_storage<T>(res)), dw_in(to_storage<T>(w));
      DeviceBuffer<T> ddy(to_storage<T>(dy)), sum_buf(n), y(n), dx(n), dw(s.C);
      DeviceBuffer<float> rstd(s.N);
      DeviceBuffer<float> ws(cuda::rmsnorm_backward_workspace_bytes(s.N, s.C) / sizeof(float));
      T* sum_out = in_place ? dres.get() : sum_buf.get();
      cuda::add_rmsnorm_forward<T>(this->stream_, dx_in.get(), dres.get(), dw_in.get(), s.N, s.C, kEps,
                                   sum_out, y.get(), rstd.get());
      const std::vector<float> got_sum = to_float<T>(in_place ? dres.download() : sum_buf.download());
      EXPECT_EQ(rel_error(got_sum, sum), 0.0) << "sum_out is x + residual rounded to T, exactly";
      EXPECT_LE(rel_error(to_float<T>(y.download()), ref.y), tolerance<T>()) << "y";
      EXPECT_LE(rel_error(rstd.download(), ref.rstd), kStatTolerance) << "rstd";
      cuda::rmsnorm_backward<T>(this->stream_, ddy.get(), sum_out, dw_in.get(), rstd.get(), s.N, s.C,
                                dx.get(), dw.get(), ws.get());
      EXPECT_LE(rel_error(to_float<T>(dx.download()), ref.dx), tolerance<T>()) << "d(sum)";
      EXPECT_LE(rel_error(to_float<T>(dw.download()), ref.dw), tolerance<T>()) << "dw";
    }
  }
}

}  // namespace
}  // namespace engine::cuda_test
