// plugins/adamw8bit/kernels/adamw8bit_cuda.cu (the multi-tensor 8-bit blockwise AdamW step) against its CPU
// reference adamw8bit::update_8bit / update_32bit (plugins/adamw8bit/blockwise8.hpp): tensors of odd sizes
// (0, 1, 255, 256, 257, 1000, 70000) with 8-bit states, two with fp32 states (below min_8bit_size), f32 and bf16
// gradients, weight decay on and off, grad_scale 1 and != 1, more tensors than one launch takes, four steps.
// Tolerance: none. The kernel repeats the reference's rounded fp32 operations in its order and the same
// nearest-code search, so parameters, codes and absmax values must equal the CPU's bit for bit.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "plugins/adamw8bit/blockwise8.hpp"
#include "plugins/adamw8bit/kernels/adamw8bit_cuda.cuh"
#include "tests/cuda/cuda_test_support.hpp"

namespace {

using engine::cuda_test::from_bf16;
using engine::cuda_test::random_values;
using engine::cuda_test::to_bf16;

#define CUDA_OK(call) \
  ASSERT_EQ((call), cudaSuccess) << #call << ": " << cudaGetErrorString(cudaGetLastError())

template <typename T>
T* upload(const std::vector<T>& v) {
  T* d = nullptr;
  cudaMalloc(&d, std::max<size_t>(1, v.size()) * sizeof(T));
  if (!v.empty()) cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}

template <typename T>
std::vector<T> download(const T* d, size_t n) {
  std::vector<T> v(n);
  if (n > 0) cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}

struct Case {
  int64_t n;
  bool eight_bit;
  bool bf16;
  double wd;
  std::vector<float> p, m32, v32, a1, a2;
  std::vector<uint8_t> c1, c2;
  float *dp = nullptr, *da1 = nullptr, *da2 = nullptr;
  void *ds1 = nullptr, *ds2 = nullptr, *dg = nullptr;
};

TEST(CudaAdamw8bit, StepEqualsCpuBitwise) {
  SKIP_WITHOUT_GPU();
  std::vector<Case> cases;
  uint64_t seed = 1;
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{255}, int64_t{256}, int64_t{257}, int64_t{1000},
                    int64_t{70000}}) {
    for (bool bf16 : {false, true}) {
      for (double wd : {0.0, 0.01}) cases.push_back(Case{n, true, bf16, wd, {}, {}, {}, {}, {}, {}, {}});
    }
  }
  cases.push_back(Case{100, false, false, 0.01, {}, {}, {}, {}, {}, {}, {}});
  cases.push_back(Case{4095, false, true, 0.0, {}, {}, {}, {}, {}, {}, {}});
  ASSERT_GT(cases.size(), static_cast<size_t>(adamw8bit::cuda::kMaxTensorsPerLaunch));
  for (Case& c : cases) {
    const size_t n = static_cast<size_t>(c.n), blocks = static_cast<size_t>(adamw8bit::blocks_of(c.n));
    c.p = random_values(n, seed++);
    c.dp = upload(c.p);
    if (c.eight_bit) {
      c.c1.assign(n, 0);
      c.c2.assign(n, 0);
      c.a1.assign(blocks, 0.0f);
      c.a2.assign(blocks, 0.0f);
      c.ds1 = upload(c.c1);
      c.ds2 = upload(c.c2);
      c.da1 = upload(c.a1);
      c.da2 = upload(c.a2);
    } else {
      c.m32.assign(n, 0.0f);
      c.v32.assign(n, 0.0f);
      c.ds1 = upload(c.m32);
      c.ds2 = upload(c.v32);
    }
  }
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int step = 1; step <= 4; ++step) {
    const double grad_scale = step == 3 ? 0.5 : 1.0;
    std::vector<adamw8bit::cuda::TensorArgs> args;
    std::vector<std::vector<float>> grads;
    for (Case& c : cases) {
      const size_t n = static_cast<size_t>(c.n);
      std::vector<float> g = random_values(n, seed++, -2.0f, 2.0f);
      for (size_t i = 0; i < n; ++i) g[i] *= (i / 256) % 3 == 0 ? 1e-3f : 1.0f;  // blocks of other scales
      cudaFree(c.dg);
      if (c.bf16) {
        const auto g16 = to_bf16(g);
        c.dg = upload(g16);
        g = from_bf16(g16);
      } else {
        c.dg = upload(g);
      }
      adamw8bit::Hyper h;
      h.lr = 1e-2;
      h.weight_decay = c.wd;
      h.grad_scale = grad_scale;
      const adamw8bit::Coefficients k = adamw8bit::coefficients(h, step);
      adamw8bit::cuda::TensorArgs a;
      a.p = c.dp;
      a.g = c.dg;
      a.s1 = c.ds1;
      a.s2 = c.ds2;
      a.a1 = c.da1;
      a.a2 = c.da2;
      a.n = c.n;
      a.g_type = c.bf16 ? adamw8bit::cuda::GradType::BF16 : adamw8bit::cuda::GradType::F32;
      a.state_8bit = c.eight_bit ? 1 : 0;
      a.decayed = k.decayed ? 1 : 0;
      a.decay = k.decay;
      a.step_size = k.step_size;
      a.bc2_sqrt = k.bc2_sqrt;
      args.push_back(a);
      if (c.eight_bit) {
        adamw8bit::update_8bit(c.p.data(), g.data(), c.c1.data(), c.c2.data(), c.a1.data(), c.a2.data(), c.n, k);
      } else {
        adamw8bit::update_32bit(c.p.data(), g.data(), c.m32.data(), c.v32.data(), c.n, k);
      }
    }
    adamw8bit::Hyper h;
    h.grad_scale = grad_scale;
    const adamw8bit::Coefficients k = adamw8bit::coefficients(h, 1);
    adamw8bit::cuda::SharedArgs shared;
    shared.b1 = k.b1;
    shared.one_minus_b1 = k.one_minus_b1;
    shared.b2 = k.b2;
    shared.one_minus_b2 = k.one_minus_b2;
    shared.eps = k.eps;
    shared.grad_scale = k.grad_scale;
    shared.scaled = k.scaled ? 1 : 0;
    shared.map1 = adamw8bit::signed_map().data();
    shared.map2 = adamw8bit::unsigned_map().data();
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(adamw8bit::cuda::step(stream, args.data(), static_cast<int64_t>(args.size()), shared));
    CUDA_OK(cudaStreamSynchronize(stream));
    for (size_t t = 0; t < cases.size(); ++t) {
      const Case& c = cases[t];
      const size_t n = static_cast<size_t>(c.n);
      const std::string what = "tensor " + std::to_string(t) + " (n " + std::to_string(c.n) +
                               (c.eight_bit ? ", 8-bit" : ", fp32 states") + (c.bf16 ? ", bf16 g" : ", f32 g") +
                               ", step " + std::to_string(step) + ")";
      const auto p = download(c.dp, n);
      EXPECT_EQ(std::memcmp(p.data(), c.p.data(), n * sizeof(float)), 0) << "p of " << what;
      if (c.eight_bit) {
        const size_t blocks = c.a1.size();
        EXPECT_EQ(download(static_cast<uint8_t*>(c.ds1), n), c.c1) << "state1 of " << what;
        EXPECT_EQ(download(static_cast<uint8_t*>(c.ds2), n), c.c2) << "state2 of " << what;
        EXPECT_EQ(download(c.da1, blocks), c.a1) << "absmax1 of " << what;
        EXPECT_EQ(download(c.da2, blocks), c.a2) << "absmax2 of " << what;
      } else {
        const auto m = download(static_cast<float*>(c.ds1), n), v = download(static_cast<float*>(c.ds2), n);
        EXPECT_EQ(std::memcmp(m.data(), c.m32.data(), n * sizeof(float)), 0) << "m of " << what;
        EXPECT_EQ(std::memcmp(v.data(), c.v32.data(), n * sizeof(float)), 0) << "v of " << what;
      }
    }
  }
  for (Case& c : cases) {
    for (void* d : {static_cast<void*>(c.dp), c.ds1, c.ds2, c.dg, static_cast<void*>(c.da1), static_cast<void*>(c.da2)})
      cudaFree(d);
  }
  CUDA_OK(cudaStreamDestroy(stream));
}

}  // namespace
