// kernels/cuda/elementwise.cu against kernels/cpu/elementwise.hpp: fill (every dtype, bitwise), axpby (every
// dtype pair, f32/f64 against the CPU reference, a == 0 not reading dst), broadcast add / mul, scale and
// fill_from_scalar, float (fp32 tolerance) and bf16 (inputs rounded to bf16, CPU in fp32, bf16 tolerance).
#include "kernels/cuda/elementwise.cuh"

#include <gtest/gtest.h>

#include <cstring>
#include <utility>
#include <vector>

#include "engine/core/float16.hpp"
#include "kernels/cpu/elementwise.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "tests/cuda/cuda_test_support.hpp"

namespace {

using engine::cuda::ElemType;
using engine::cuda_test::DeviceBuffer;
using engine::cuda_test::from_bf16;
using engine::cuda_test::random_values;
using engine::cuda_test::rel_error;
using engine::cuda_test::round_to_bf16;
using engine::cuda_test::to_bf16;

constexpr double kF32Tol = 1e-5, kBf16Tol = 1e-2;

template <typename W>
std::vector<W> fill_on_gpu(ElemType t, double value, size_t n) {
  DeviceBuffer<W> buf(n);
  engine::cuda::fill(nullptr, buf.get(), t, value, static_cast<int64_t>(n));
  return buf.download();
}

TEST(CudaElementwise, FillEveryDtype) {
  SKIP_WITHOUT_GPU();
  for (double v : {0.0, -1.5, 3.0999999, 70000.0}) {
    for (size_t n : {size_t{1}, size_t{1001}}) {
      for (float x : fill_on_gpu<float>(ElemType::F32, v, n)) ASSERT_EQ(x, static_cast<float>(v));
      for (double x : fill_on_gpu<double>(ElemType::F64, v, n)) ASSERT_EQ(x, v);
      for (uint16_t x : fill_on_gpu<uint16_t>(ElemType::BF16, v, n))
        ASSERT_EQ(x, engine::f32_to_bf16(static_cast<float>(v)));
      for (uint16_t x : fill_on_gpu<uint16_t>(ElemType::F16, v, n))
        ASSERT_EQ(x, engine::f32_to_f16(static_cast<float>(v)));
      for (int32_t x : fill_on_gpu<int32_t>(ElemType::I32, v, n)) ASSERT_EQ(x, static_cast<int32_t>(v));
      for (int64_t x : fill_on_gpu<int64_t>(ElemType::I64, v, n)) ASSERT_EQ(x, static_cast<int64_t>(v));
      if (v >= 0 && v < 256) {
        for (uint8_t x : fill_on_gpu<uint8_t>(ElemType::U8, v, n)) ASSERT_EQ(x, static_cast<uint8_t>(v));
      }
    }
  }
}

TEST(CudaElementwise, AxpbyF32AndF64MatchCpu) {
  SKIP_WITHOUT_GPU();
  engine::cpu::ThreadPool pool(2);
  for (int64_t n : {1, 777, 100003}) {
    for (auto [a, b] : {std::pair{1.0, 1.0}, std::pair{0.5, -2.0}, std::pair{0.9, 0.1}}) {
      auto dst = random_values(n, 1), src = random_values(n, 2);
      DeviceBuffer<float> d(dst), s(src);
      engine::cuda::axpby(nullptr, d.get(), ElemType::F32, a, s.get(), ElemType::F32, b, n);
      engine::cpu::axpby<float>(pool, dst.data(), float(a), src.data(), float(b), n);
      EXPECT_LE(rel_error(d.download(), dst), kF32Tol) << n;

      std::vector<double> dd(dst.begin(), dst.end()), sd(src.begin(), src.end());
      DeviceBuffer<double> d64(dd), s64(sd);
      engine::cuda::axpby(nullptr, d64.get(), ElemType::F64, a, s64.get(), ElemType::F64, b, n);
      engine::cpu::axpby<double>(pool, dd.data(), a, sd.data(), b, n);
      EXPECT_EQ(d64.download(), dd) << "f64 axpby is exact to the CPU's rounding, n " << n;
    }
  }
}

// f32 grad += bf16 / f16 / f64 grad, bf16 dst += f32: reference in double on the stored values.
TEST(CudaElementwise, AxpbyMixedDtypes) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 4099;
  const double a = 0.75, b = -1.25;
  const auto dst0 = random_values(n, 3), src0 = random_values(n, 4);
  const auto src_bf16 = round_to_bf16(src0);
  std::vector<float> want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = float(a) * dst0[i] + float(b) * src_bf16[i];

  {  // f32 += bf16
    DeviceBuffer<float> d(dst0);
    DeviceBuffer<__nv_bfloat16> s(to_bf16(src0));
    engine::cuda::axpby(nullptr, d.get(), ElemType::F32, a, s.get(), ElemType::BF16, b, n);
    EXPECT_LE(rel_error(d.download(), want), kF32Tol);
  }
  {  // f32 += f16
    std::vector<uint16_t> h(n);
    std::vector<float> w(n);
    for (int64_t i = 0; i < n; ++i) {
      h[i] = engine::f32_to_f16(src0[i]);
      w[i] = float(a) * dst0[i] + float(b) * engine::f16_to_f32(h[i]);
    }
    DeviceBuffer<float> d(dst0);
    DeviceBuffer<uint16_t> s(h);
    engine::cuda::axpby(nullptr, d.get(), ElemType::F32, a, s.get(), ElemType::F16, b, n);
    EXPECT_LE(rel_error(d.download(), w), kF32Tol);
  }
  {  // f32 += f64
    std::vector<double> s64(src0.begin(), src0.end());
    std::vector<float> w(n);
    for (int64_t i = 0; i < n; ++i) w[i] = float(a) * dst0[i] + float(b) * src0[i];
    DeviceBuffer<float> d(dst0);
    DeviceBuffer<double> s(s64);
    engine::cuda::axpby(nullptr, d.get(), ElemType::F32, a, s.get(), ElemType::F64, b, n);
    EXPECT_LE(rel_error(d.download(), w), kF32Tol);
  }
  {  // bf16 += f32
    const auto dst_bf16 = round_to_bf16(dst0);
    std::vector<float> w(n);
    for (int64_t i = 0; i < n; ++i) w[i] = float(a) * dst_bf16[i] + float(b) * src0[i];
    DeviceBuffer<__nv_bfloat16> d(to_bf16(dst0));
    DeviceBuffer<float> s(src0);
    engine::cuda::axpby(nullptr, d.get(), ElemType::BF16, a, s.get(), ElemType::F32, b, n);
    EXPECT_LE(rel_error(from_bf16(d.download()), w), kBf16Tol);
  }
  EXPECT_THROW(engine::cuda::axpby(nullptr, nullptr, ElemType::I32, 1, nullptr, ElemType::F32, 1, n),
               std::exception);
}

TEST(CudaElementwise, AxpbyWithZeroAIgnoresDst) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 1000;
  const auto src = random_values(n, 5);
  DeviceBuffer<float> d(n);  // NaN-poisoned
  DeviceBuffer<float> s(src);
  engine::cuda::axpby(nullptr, d.get(), ElemType::F32, 0.0, s.get(), ElemType::F32, 2.0, n);
  std::vector<float> want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = 2.0f * src[i];
  EXPECT_EQ(d.download(), want);
}

template <bool Mul>
void check_broadcast(int64_t outer, int64_t inner) {
  engine::cpu::ThreadPool pool(2);
  const auto a = random_values(outer * inner, 7), b = random_values(inner, 8);
  {
    std::vector<float> want(outer * inner);
    if (Mul)
      engine::cpu::mul_broadcast<float>(pool, a.data(), b.data(), want.data(), outer, inner);
    else
      engine::cpu::add_broadcast<float>(pool, a.data(), b.data(), want.data(), outer, inner);
    DeviceBuffer<float> da(a), db(b), out(outer * inner);
    if (Mul)
      engine::cuda::mul_broadcast<float>(nullptr, da.get(), db.get(), out.get(), outer, inner);
    else
      engine::cuda::add_broadcast<float>(nullptr, da.get(), db.get(), out.get(), outer, inner);
    EXPECT_EQ(out.download(), want) << "one fp32 operation per element: exact; " << outer << "x" << inner;
  }
  {
    const auto ar = round_to_bf16(a), br = round_to_bf16(b);
    std::vector<float> want(outer * inner);
    if (Mul)
      engine::cpu::mul_broadcast<float>(pool, ar.data(), br.data(), want.data(), outer, inner);
    else
      engine::cpu::add_broadcast<float>(pool, ar.data(), br.data(), want.data(), outer, inner);
    DeviceBuffer<__nv_bfloat16> da(to_bf16(a)), db(to_bf16(b)), out(outer * inner);
    if (Mul)
      engine::cuda::mul_broadcast<__nv_bfloat16>(nullptr, da.get(), db.get(), out.get(), outer, inner);
    else
      engine::cuda::add_broadcast<__nv_bfloat16>(nullptr, da.get(), db.get(), out.get(), outer, inner);
    EXPECT_LE(rel_error(from_bf16(out.download()), want), kBf16Tol) << outer << "x" << inner;
  }
}

TEST(CudaElementwise, BroadcastAddMul) {
  SKIP_WITHOUT_GPU();
  // {257, 1000}, {64, 4096}, {3, 24} and {1, 8192} take the 16-byte vector path (rows of whole vectors of
  // 4 f32 or 8 bf16), the others the element-per-thread one.
  for (auto [outer, inner] : {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {257, 1000}, {1000, 1}, {1, 4097},
                              {64, 4096}, {3, 24}, {1, 8192}}) {
    check_broadcast<false>(outer, inner);
    check_broadcast<true>(outer, inner);
  }
}

TEST(CudaElementwise, ScaleAndFillFromScalar) {
  SKIP_WITHOUT_GPU();
  engine::cpu::ThreadPool pool(2);
  for (int64_t n : {1, 333, 65537}) {
    const auto x = random_values(n, 9);
    std::vector<float> want(n);
    engine::cpu::scale<float>(pool, x.data(), -0.37f, want.data(), n);
    DeviceBuffer<float> dx(x), out(n);
    engine::cuda::scale<float>(nullptr, dx.get(), -0.37f, out.get(), n);
    EXPECT_EQ(out.download(), want);
    engine::cuda::scale<float>(nullptr, dx.get(), -0.37f, dx.get(), n);  // in place
    EXPECT_EQ(dx.download(), want);

    const auto xr = round_to_bf16(x);
    engine::cpu::scale<float>(pool, xr.data(), 3.0f, want.data(), n);
    DeviceBuffer<__nv_bfloat16> bx(to_bf16(x)), bout(n);
    engine::cuda::scale<__nv_bfloat16>(nullptr, bx.get(), 3.0f, bout.get(), n);
    EXPECT_LE(rel_error(from_bf16(bout.download()), want), kBf16Tol);

    DeviceBuffer<float> scalar(std::vector<float>{1.75f});
    DeviceBuffer<float> f(n);
    engine::cuda::fill_from_scalar<float>(nullptr, f.get(), n, scalar.get(), -0.5f);
    EXPECT_EQ(f.download(), std::vector<float>(n, -0.875f));
    DeviceBuffer<__nv_bfloat16> fb(n);
    engine::cuda::fill_from_scalar<__nv_bfloat16>(nullptr, fb.get(), n, scalar.get(), 2.0f);
    EXPECT_EQ(from_bf16(fb.download()), std::vector<float>(n, 3.5f));
  }
}

}  // namespace
