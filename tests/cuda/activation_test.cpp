// kernels/cuda/activation.cu against kernels/cpu/activation.hpp: SiLU and SwiGLU forward and backward
// (including the null-gradient forms), float (fp32 tolerance) and bf16 (inputs rounded to bf16, the CPU in
// fp32 on them, bf16 tolerance), at odd sizes. Inputs span [-8, 8] so that sigmoid saturates somewhere.
#include "kernels/cuda/activation.cuh"

#include <gtest/gtest.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/cpu/activation.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "tests/cuda/cuda_test_support.hpp"

namespace {

using engine::cuda_test::DeviceBuffer;
using engine::cuda_test::from_bf16;
using engine::cuda_test::random_values;
using engine::cuda_test::rel_error;
using engine::cuda_test::round_to_bf16;
using engine::cuda_test::to_bf16;

constexpr double kF32Tol = 1e-5, kBf16Tol = 1e-2;
// 4096 and 262144 are whole numbers of 16-byte vectors (the vectorised swiglu path); the others are not.
const int64_t kSizes[] = {1, 1023, 4096, 100003, 262144};

TEST(CudaActivation, SiluFloatAndBf16) {
  SKIP_WITHOUT_GPU();
  engine::cpu::ThreadPool pool(2);
  for (int64_t n : kSizes) {
    const auto x = random_values(n, 1, -8, 8), dy = random_values(n, 2);
    std::vector<float> y(n), dx(n);
    engine::cpu::silu_forward<float>(pool, x.data(), y.data(), n);
    engine::cpu::silu_backward<float>(pool, dy.data(), x.data(), dx.data(), n);
    DeviceBuffer<float> gx(x), gdy(dy), gy(n), gdx(n);
    engine::cuda::silu_forward<float>(nullptr, gx.get(), gy.get(), n);
    engine::cuda::silu_backward<float>(nullptr, gdy.get(), gx.get(), gdx.get(), n);
    EXPECT_LE(rel_error(gy.download(), y), kF32Tol) << n;
    EXPECT_LE(rel_error(gdx.download(), dx), kF32Tol) << n;

    const auto xr = round_to_bf16(x), dyr = round_to_bf16(dy);
    engine::cpu::silu_forward<float>(pool, xr.data(), y.data(), n);
    engine::cpu::silu_backward<float>(pool, dyr.data(), xr.data(), dx.data(), n);
    DeviceBuffer<__nv_bfloat16> bx(to_bf16(x)), bdy(to_bf16(dy)), by(n), bdx(n);
    engine::cuda::silu_forward<__nv_bfloat16>(nullptr, bx.get(), by.get(), n);
    engine::cuda::silu_backward<__nv_bfloat16>(nullptr, bdy.get(), bx.get(), bdx.get(), n);
    EXPECT_LE(rel_error(from_bf16(by.download()), y), kBf16Tol) << n;
    EXPECT_LE(rel_error(from_bf16(bdx.download()), dx), kBf16Tol) << n;
  }
}

template <typename T>
std::vector<float> download_f32(const DeviceBuffer<T>& b) {
  if constexpr (std::is_same_v<T, float>)
    return b.download();
  else
    return from_bf16(b.download());
}

template <typename T>
void check_swiglu(int64_t n, double tol) {
  engine::cpu::ThreadPool pool(2);
  auto g = random_values(n, 3, -8, 8), u = random_values(n, 4, -2, 2), dy = random_values(n, 5);
  if constexpr (!std::is_same_v<T, float>) {
    g = round_to_bf16(g);
    u = round_to_bf16(u);
    dy = round_to_bf16(dy);
  }
  std::vector<float> y(n), dg(n), du(n);
  engine::cpu::swiglu_forward<float>(pool, g.data(), u.data(), y.data(), n);
  engine::cpu::swiglu_backward<float>(pool, dy.data(), g.data(), u.data(), dg.data(), du.data(), n);
  auto upload = [](const std::vector<float>& v) {
    if constexpr (std::is_same_v<T, float>)
      return v;
    else
      return to_bf16(v);
  };
  DeviceBuffer<T> gg(upload(g)), gu(upload(u)), gdy(upload(dy)), gy(n), gdg(n), gdu(n);
  engine::cuda::swiglu_forward<T>(nullptr, gg.get(), gu.get(), gy.get(), n);
  engine::cuda::swiglu_backward<T>(nullptr, gdy.get(), gg.get(), gu.get(), gdg.get(), gdu.get(), n);
  EXPECT_LE(rel_error(download_f32(gy), y), tol) << n;
  EXPECT_LE(rel_error(download_f32(gdg), dg), tol) << n;
  EXPECT_LE(rel_error(download_f32(gdu), du), tol) << n;

  // Only one gradient wanted: the other buffer stays as it was (NaN poison), the wanted one is the same.
  DeviceBuffer<T> only_g(n), untouched(n);
  engine::cuda::swiglu_backward<T>(nullptr, gdy.get(), gg.get(), gu.get(), only_g.get(), nullptr, n);
  EXPECT_LE(rel_error(download_f32(only_g), dg), tol) << n;
  DeviceBuffer<T> only_u(n);
  engine::cuda::swiglu_backward<T>(nullptr, gdy.get(), gg.get(), gu.get(), nullptr, only_u.get(), n);
  EXPECT_LE(rel_error(download_f32(only_u), du), tol) << n;
  for (float v : download_f32(untouched)) ASSERT_TRUE(std::isnan(v));

  // In place (the node's backward when it solely holds gate and up): the same gradients.
  DeviceBuffer<T> ig(upload(g)), iu(upload(u));
  engine::cuda::swiglu_backward<T>(nullptr, gdy.get(), ig.get(), iu.get(), ig.get(), iu.get(), n);
  EXPECT_EQ(download_f32(ig), download_f32(gdg)) << n;
  EXPECT_EQ(download_f32(iu), download_f32(gdu)) << n;
}

TEST(CudaActivation, SwigluFloatAndBf16) {
  SKIP_WITHOUT_GPU();
  for (int64_t n : kSizes) {
    check_swiglu<float>(n, kF32Tol);
    check_swiglu<__nv_bfloat16>(n, kBf16Tol);
  }
}

}  // namespace
