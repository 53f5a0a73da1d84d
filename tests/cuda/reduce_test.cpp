// kernels/cuda/reduce.cu against kernels/cpu/reduce.hpp: sum_all, sum_squares (accumulated over several
// tensors, as the global grad norm is), count_nonfinite, sum_rows and sum_rows_product, float and bf16, at
// sizes on both sides of the one-block / one-chunk thresholds; every result bitwise identical across two
// runs. The scalar norm: |got - want| / |want| on positive inputs (sums far from 0). Column sums: the CPU
// reference in double on the same (for bf16: rounded) values, since the GPU accumulates in f64.
#include "kernels/cuda/reduce.cuh"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/cpu/reduce.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "tests/cuda/cuda_test_support.hpp"

namespace {

using engine::cuda_test::DeviceBuffer;
using engine::cuda_test::from_bf16;
using engine::cuda_test::random_values;
using engine::cuda_test::rel_error;
using engine::cuda_test::round_to_bf16;
using engine::cuda_test::to_bf16;

const int64_t kSizes[] = {1, 4096, 4097, 100003, (int64_t{1} << 22) + 5};

template <typename T>
float gpu_scalar(const DeviceBuffer<T>& x, int64_t n, bool squares) {
  DeviceBuffer<float> out(1);
  const size_t bytes = engine::cuda::scalar_reduce_workspace_bytes(n);
  DeviceBuffer<unsigned char> ws(bytes);
  if (squares)
    engine::cuda::sum_squares<T>(nullptr, x.get(), n, out.get(), false, bytes ? ws.get() : nullptr);
  else
    engine::cuda::sum_all<T>(nullptr, x.get(), n, out.get(), false, bytes ? ws.get() : nullptr);
  return out.download()[0];
}

uint32_t bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}

TEST(CudaReduce, SumAllAndSumSquares) {
  SKIP_WITHOUT_GPU();
  engine::cpu::ThreadPool pool(2);
  for (int64_t n : kSizes) {
    const auto x = random_values(n, 1, 0.001f, 1.0f);
    const double want = engine::cpu::sum_all<float>(pool, x.data(), n);
    double want_sq = 0.0;
    for (float v : x) want_sq += double(v) * double(v);
    DeviceBuffer<float> gx(x);
    const float got = gpu_scalar(gx, n, false);
    EXPECT_LE(std::fabs(got - want) / want, 1e-6) << n;
    EXPECT_EQ(bits(gpu_scalar(gx, n, false)), bits(got)) << "rerun differs, n " << n;
    const float got_sq = gpu_scalar(gx, n, true);
    EXPECT_LE(std::fabs(got_sq - want_sq) / want_sq, 1e-6) << n;
    EXPECT_EQ(bits(gpu_scalar(gx, n, true)), bits(got_sq));

    const auto xr = round_to_bf16(x);
    const double want_b = engine::cpu::sum_all<float>(pool, xr.data(), n);
    DeviceBuffer<__nv_bfloat16> bx(to_bf16(x));
    const float got_b = gpu_scalar(bx, n, false);
    EXPECT_LE(std::fabs(got_b - want_b) / want_b, 1e-6) << "exact inputs, so fp32-accurate; n " << n;
    EXPECT_EQ(bits(gpu_scalar(bx, n, false)), bits(got_b));
  }
}

TEST(CudaReduce, SumSquaresAccumulatesOverTensors) {
  SKIP_WITHOUT_GPU();
  const std::vector<int64_t> sizes{3, 5000, 123457, 1 << 20};
  std::vector<DeviceBuffer<float>*> tensors;
  double want = 0.0;
  size_t ws_bytes = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    const auto x = random_values(sizes[k], 10 + k);
    for (float v : x) want += double(v) * double(v);
    tensors.push_back(new DeviceBuffer<float>(x));
    ws_bytes = std::max(ws_bytes, engine::cuda::scalar_reduce_workspace_bytes(sizes[k]));
  }
  DeviceBuffer<unsigned char> ws(ws_bytes);
  auto run = [&] {
    DeviceBuffer<float> out(1);
    for (size_t k = 0; k < sizes.size(); ++k)
      engine::cuda::sum_squares<float>(nullptr, tensors[k]->get(), sizes[k], out.get(), k > 0, ws.get());
    return out.download()[0];
  };
  const float got = run();
  EXPECT_LE(std::fabs(got - want) / want, 1e-6);
  EXPECT_EQ(bits(run()), bits(got));
  for (auto* t : tensors) delete t;
}

TEST(CudaReduce, CountNonfinite) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 300001;
  auto x = random_values(n, 2);
  x[0] = NAN;
  x[12345] = INFINITY;
  x[n - 1] = -INFINITY;
  x[200000] = NAN;
  DeviceBuffer<float> gx(x);
  DeviceBuffer<int> out(1);
  engine::cuda::count_nonfinite<float>(nullptr, gx.get(), n, out.get(), false);
  EXPECT_EQ(out.download()[0], 4);
  engine::cuda::count_nonfinite<float>(nullptr, gx.get(), n, out.get(), true);
  EXPECT_EQ(out.download()[0], 8);
  DeviceBuffer<__nv_bfloat16> bx(to_bf16(x));
  engine::cuda::count_nonfinite<__nv_bfloat16>(nullptr, bx.get(), n, out.get(), false);
  EXPECT_EQ(out.download()[0], 4);
  DeviceBuffer<float> clean(random_values(1000, 3));
  engine::cuda::count_nonfinite<float>(nullptr, clean.get(), 1000, out.get(), false);
  EXPECT_EQ(out.download()[0], 0);
}

template <typename T>
std::vector<T> gpu_column_sums(const std::vector<T>& x, const std::vector<T>* y, int64_t rows, int64_t cols) {
  DeviceBuffer<T> gx(x), out(cols);
  const size_t bytes = engine::cuda::sum_rows_workspace_bytes(rows, cols);
  DeviceBuffer<unsigned char> ws(bytes);
  if (y) {
    DeviceBuffer<T> gy(*y);
    engine::cuda::sum_rows_product<T>(nullptr, gx.get(), gy.get(), rows, cols, out.get(),
                                      bytes ? ws.get() : nullptr);
    return out.download();
  }
  engine::cuda::sum_rows<T>(nullptr, gx.get(), rows, cols, out.get(), bytes ? ws.get() : nullptr);
  return out.download();
}

TEST(CudaReduce, SumRowsAndProduct) {
  SKIP_WITHOUT_GPU();
  engine::cpu::ThreadPool pool(2);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{2, 1},
                            {1, 5},
                            {512, 3},
                            {513, 3},
                            {1500, 333},
                            {16384, 64},
                            {3, 152000},
                            {4096, 1000}}) {
    const auto x = random_values(rows * cols, 4), y = random_values(rows * cols, 5);
    for (bool product : {false, true}) {
      std::vector<double> xd(x.begin(), x.end()), yd(y.begin(), y.end()), want(cols);
      if (product)
        engine::cpu::sum_rows_product<double>(pool, xd.data(), yd.data(), rows, cols, want.data());
      else
        engine::cpu::sum_rows<double>(pool, xd.data(), rows, cols, want.data());
      const std::vector<float> want_f(want.begin(), want.end());
      const auto got = gpu_column_sums<float>(x, product ? &y : nullptr, rows, cols);
      EXPECT_LE(rel_error(got, want_f), 1e-5) << rows << "x" << cols << " product " << product;
      EXPECT_EQ(gpu_column_sums<float>(x, product ? &y : nullptr, rows, cols), got) << "rerun differs";

      const auto xr = round_to_bf16(x), yr = round_to_bf16(y);
      std::vector<float> want_b(cols);
      if (product)
        engine::cpu::sum_rows_product<float>(pool, xr.data(), yr.data(), rows, cols, want_b.data());
      else
        engine::cpu::sum_rows<float>(pool, xr.data(), rows, cols, want_b.data());
      const auto yb = to_bf16(y);
      const auto gotb = gpu_column_sums<__nv_bfloat16>(to_bf16(x), product ? &yb : nullptr, rows, cols);
      EXPECT_LE(rel_error(from_bf16(gotb), want_b), 1e-2) << rows << "x" << cols << " product " << product;
    }
  }
}

TEST(CudaReduce, SumRowsOfZeroRowsIsZero) {
  SKIP_WITHOUT_GPU();
  DeviceBuffer<float> out(7);
  engine::cuda::sum_rows<float>(nullptr, nullptr, 0, 7, out.get(), nullptr);
  EXPECT_EQ(out.download(), std::vector<float>(7, 0.0f));
}

}  // namespace
