// plugins/nf4/kernels/nf4_cuda.cu against the CPU reference (plugins/nf4/nf4_format.hpp): the quantize kernel
// gives the CPU's packed codes and absmax from f32 and bf16 weights (full and partial blocks, odd sizes,
// block 64 and 128), and the dequantize kernel the CPU's values in f32 and bf16, with plain and
// double-quantized absmax. Tolerance: none (max is exact; the products and the reciprocal are IEEE-rounded on
// both sides, no FMA).
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "plugins/nf4/kernels/nf4_cuda.cuh"
#include "plugins/nf4/nf4_format.hpp"
#include "tests/cuda/cuda_test_support.hpp"

namespace {

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

float bf16_to_f32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(CudaNf4, QuantizeAndDequantizeEqualTheCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (int64_t bs : {int64_t{64}, int64_t{128}}) {
    for (int64_t n : {int64_t{64}, int64_t{4096}, int64_t{64 * 300 + 10}, int64_t{131072 + 7}}) {
      for (bool bf16_in : {false, true}) {
        std::vector<float> x(static_cast<size_t>(n));
        for (auto& v : x) v = normal(gen);
        x[0] = 0.9f;  // a larger value in the first block
        std::vector<uint16_t> x16(x.size());
        if (bf16_in) {
          for (size_t i = 0; i < x.size(); ++i) {
            x16[i] = nf4::f32_to_bf16_bits(x[i]);
            x[i] = bf16_to_f32(x16[i]);  // the CPU sees the values the kernel reads
          }
        }
        const size_t bytes = static_cast<size_t>((n + 1) / 2), blocks = static_cast<size_t>((n + bs - 1) / bs);
        std::vector<uint8_t> packed(bytes);
        std::vector<float> absmax(blocks);
        nf4::quantize(x.data(), n, bs, packed.data(), absmax.data());

        void* din = bf16_in ? static_cast<void*>(upload(x16)) : static_cast<void*>(upload(x));
        uint8_t* dpacked = upload(std::vector<uint8_t>(bytes, 0xAB));
        float* dabsmax = upload(std::vector<float>(blocks, -1.0f));
        CUDA_OK(nf4::cuda::quantize(nullptr, din, bf16_in, n, bs, dpacked, dabsmax));
        CUDA_OK(cudaDeviceSynchronize());
        const std::string what = "n " + std::to_string(n) + ", block " + std::to_string(bs) + (bf16_in ? ", bf16" : ", f32");
        EXPECT_EQ(download(dpacked, bytes), packed) << "packed, " << what;
        EXPECT_EQ(download(dabsmax, blocks), absmax) << "absmax, " << what;

        for (bool dq : {false, true}) {
          std::vector<float> am = absmax;
          std::vector<uint8_t> codes(blocks);
          std::vector<float> nested((blocks + 255) / 256);
          float offset = 0.0f;
          nf4::cuda::Weight w;
          w.packed = dpacked;
          w.n = n;
          w.blocksize = bs;
          uint8_t* dcodes = nullptr;
          float* dnested = nullptr;
          if (dq) {
            offset = nf4::quantize_absmax(absmax.data(), static_cast<int64_t>(blocks), codes.data(), nested.data());
            nf4::dequantize_absmax(codes.data(), nested.data(), offset, static_cast<int64_t>(blocks), am.data());
            dcodes = upload(codes);
            dnested = upload(nested);
            w.absmax_codes = dcodes;
            w.nested_absmax = dnested;
            w.offset = offset;
            w.nested_code = adamw8bit::signed_map().data();
          } else {
            w.absmax = dabsmax;
          }
          std::vector<float> want(x.size());
          std::vector<uint16_t> want16(x.size());
          nf4::dequantize(packed.data(), am.data(), n, bs, want.data(), nullptr);
          nf4::dequantize(packed.data(), am.data(), n, bs, nullptr, want16.data());
          float* dout = upload(std::vector<float>(x.size(), 0.0f));
          uint16_t* dout16 = upload(std::vector<uint16_t>(x.size(), 0));
          CUDA_OK(nf4::cuda::dequantize(nullptr, w, dout, false));
          CUDA_OK(nf4::cuda::dequantize(nullptr, w, dout16, true));
          CUDA_OK(cudaDeviceSynchronize());
          const auto got = download(dout, x.size());
          EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
              << "f32 dequantize, " << what << (dq ? ", double quant" : "");
          EXPECT_EQ(download(dout16, x.size()), want16) << "bf16 dequantize, " << what << (dq ? ", double quant" : "");
          for (void* d : {static_cast<void*>(dout), static_cast<void*>(dout16), static_cast<void*>(dcodes),
                          static_cast<void*>(dnested)})
            cudaFree(d);
        }
        for (void* d : {din, static_cast<void*>(dpacked), static_cast<void*>(dabsmax)}) cudaFree(d);
      }
    }
  }
}

}  // namespace
