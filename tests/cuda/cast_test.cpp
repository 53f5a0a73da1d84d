// kernels/cuda/cast.cu against the CPU rules: every output bit of copy_convert equals the host reference
// (engine/core/float16.hpp for bf16/f16, C++ casts otherwise), for every dtype pair, contiguous (aligned and
// unaligned), strided, broadcast and transposed-destination layouts.
#include "kernels/cuda/cast.cuh"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "engine/abi/engine.h"
#include "engine/core/float16.hpp"
#include "kernels/cpu/cast.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "tests/cuda/cuda_test_support.hpp"

namespace {

using engine::cuda::ElemType;
using engine::cuda_test::DeviceBuffer;

static_assert(static_cast<uint32_t>(ElemType::F32) == ENG_F32);
static_assert(static_cast<uint32_t>(ElemType::BF16) == ENG_BF16);
static_assert(static_cast<uint32_t>(ElemType::F16) == ENG_F16);
static_assert(static_cast<uint32_t>(ElemType::F64) == ENG_F64);
static_assert(static_cast<uint32_t>(ElemType::I32) == ENG_I32);
static_assert(static_cast<uint32_t>(ElemType::I64) == ENG_I64);
static_assert(static_cast<uint32_t>(ElemType::U8) == ENG_U8);

const ElemType kAll[] = {ElemType::F32, ElemType::F64, ElemType::BF16, ElemType::F16,
                         ElemType::I32, ElemType::I64, ElemType::U8};

bool is_float(ElemType t) {
  return t == ElemType::F32 || t == ElemType::F64 || t == ElemType::BF16 || t == ElemType::F16;
}

// Host rule for one element (what the kernel must reproduce): 16-bit through float16.hpp, otherwise a cast.
double read(const uint8_t* p, ElemType t) {
  switch (t) {
    case ElemType::F32: {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case ElemType::F64: {
      double v;
      std::memcpy(&v, p, 8);
      return v;
    }
    case ElemType::BF16: {
      uint16_t b;
      std::memcpy(&b, p, 2);
      return engine::bf16_to_f32(b);
    }
    case ElemType::F16: {
      uint16_t b;
      std::memcpy(&b, p, 2);
      return engine::f16_to_f32(b);
    }
    case ElemType::I32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case ElemType::I64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<double>(v);
    }
    case ElemType::U8:
      return *p;
  }
  return 0;
}

void write(uint8_t* p, ElemType t, double v) {
  switch (t) {
    case ElemType::F32: {
      const float f = static_cast<float>(v);
      std::memcpy(p, &f, 4);
      return;
    }
    case ElemType::F64:
      std::memcpy(p, &v, 8);
      return;
    case ElemType::BF16: {
      const uint16_t b = engine::f32_to_bf16(static_cast<float>(v));
      std::memcpy(p, &b, 2);
      return;
    }
    case ElemType::F16: {
      const uint16_t b = engine::f32_to_f16(static_cast<float>(v));
      std::memcpy(p, &b, 2);
      return;
    }
    case ElemType::I32: {
      const int32_t i = static_cast<int32_t>(v);
      std::memcpy(p, &i, 4);
      return;
    }
    case ElemType::I64: {
      const int64_t i = static_cast<int64_t>(v);
      std::memcpy(p, &i, 8);
      return;
    }
    case ElemType::U8:
      *p = static_cast<uint8_t>(v);
      return;
  }
}

// n source values of type t: for float pairs random reals with specials (NaN, +-Inf, subnormals, values that
// overflow f16, exact bf16 ties); for any integer side, integers in [0, 200) (in range for every type).
std::vector<uint8_t> make_source(ElemType src, ElemType dst, size_t n, uint64_t seed) {
  const int es = engine::cuda::elem_size(src);
  std::vector<uint8_t> bytes(n * es);
  std::mt19937_64 gen(seed);
  const bool floats = is_float(src) && is_float(dst);
  std::uniform_real_distribution<double> real(-300.0, 300.0);
  std::uniform_int_distribution<int> integer(0, 199);
  const double specials[] = {std::numeric_limits<double>::quiet_NaN(),
                             INFINITY,
                             -INFINITY,
                             1e-40,
                             -3e-8,
                             70000.0,
                             65519.0,
                             1.0 + 1.0 / 256,
                             1.0 + 3.0 / 256,
                             0.0,
                             -0.0,
                             1e-300};
  for (size_t i = 0; i < n; ++i) {
    double v = floats ? real(gen) : integer(gen);
    if (floats && i % 7 == 3) v = specials[(i / 7) % (sizeof(specials) / sizeof(specials[0]))];
    if (src == ElemType::F32 && floats && i % 11 == 5) {  // an f32 bit pattern exactly halfway for bf16
      uint32_t b = static_cast<uint32_t>(gen()) & 0xffff0000u;
      b = (b & 0x8fffffffu) | 0x00008000u;
      float f;
      std::memcpy(&f, &b, 4);
      v = f;
    }
    write(&bytes[i * es], src, v);
  }
  return bytes;
}

std::vector<uint8_t> to_device_and_back(const std::vector<uint8_t>& host, size_t offset_bytes,
                                        size_t out_bytes,
                                        const std::function<void(const void*, void*)>& run) {
  DeviceBuffer<uint8_t> src(host.size() + offset_bytes + 16);
  DeviceBuffer<uint8_t> dst(out_bytes + offset_bytes + 16);
  cudaMemcpy(src.get() + offset_bytes, host.data(), host.size(), cudaMemcpyHostToDevice);
  run(src.get() + offset_bytes, dst.get() + offset_bytes);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint8_t> out(out_bytes);
  cudaMemcpy(out.data(), dst.get() + offset_bytes, out_bytes, cudaMemcpyDeviceToHost);
  return out;
}

// Bitwise equal, except that a NaN may be any NaN where f64 is involved: f32 <-> f64 NaN payloads are the
// hardware's (the CPU keeps x86's, the GPU may return its canonical NaN), and float16.hpp only pins down the
// 16-bit ones.
bool same_values(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want, ElemType d,
                 bool any_nan) {
  if (got.size() != want.size()) return false;
  const int ed = engine::cuda::elem_size(d);
  for (size_t i = 0; i < got.size() / ed; ++i) {
    if (std::memcmp(&got[i * ed], &want[i * ed], ed) == 0) continue;
    if (any_nan && is_float(d) && std::isnan(read(&got[i * ed], d)) && std::isnan(read(&want[i * ed], d)))
      continue;
    ADD_FAILURE() << "element " << i << ": got " << read(&got[i * ed], d) << " want "
                  << read(&want[i * ed], d);
    return false;
  }
  return true;
}

TEST(CudaCast, ContiguousEveryPairBitExact) {
  SKIP_WITHOUT_GPU();
  for (ElemType s : kAll) {
    for (ElemType d : kAll) {
      for (size_t n : {size_t{1}, size_t{7}, size_t{1000}, size_t{4099}}) {
        for (size_t offset :
             {size_t{0}, size_t{8}}) {  // offset 8 bytes: odd element offset for 16-byte vectors
          const int es = engine::cuda::elem_size(s), ed = engine::cuda::elem_size(d);
          const auto src = make_source(s, d, n, 11 + n);
          std::vector<uint8_t> want(n * ed);
          for (size_t i = 0; i < n; ++i) write(&want[i * ed], d, read(&src[i * es], s));
          if (s == d) want = src;
          const auto got = to_device_and_back(src, offset, n * ed, [&](const void* sp, void* dp) {
            engine::cuda::convert(nullptr, sp, s, dp, d, static_cast<int64_t>(n));
          });
          ASSERT_TRUE(same_values(got, want, d, s == ElemType::F64 || d == ElemType::F64))
              << "src " << int(s) << " dst " << int(d) << " n " << n << " offset " << offset;
        }
      }
    }
  }
}

// The host rule of this test is the CPU reference's: engine::cpu::convert gives the same bits.
TEST(CudaCast, HostRuleIsTheCpuReference) {
  engine::cpu::ThreadPool pool(2);
  const auto src = make_source(ElemType::F32, ElemType::BF16, 5000, 3);
  std::vector<engine::cpu::Bf16> cpu(5000);
  engine::cpu::convert(pool, reinterpret_cast<const float*>(src.data()), cpu.data(), 5000);
  for (size_t i = 0; i < 5000; ++i) {
    uint8_t b[2];
    write(b, ElemType::BF16, read(&src[i * 4], ElemType::F32));
    uint16_t bits;
    std::memcpy(&bits, b, 2);
    ASSERT_EQ(bits, cpu[i].bits) << i;
  }
}

// Reference for a strided copy: visit the index space row-major.
std::vector<uint8_t> strided_reference(const std::vector<uint8_t>& src, ElemType s,
                                       const std::vector<int64_t>& shape, const std::vector<int64_t>& ss,
                                       std::vector<uint8_t> dst, ElemType d, const std::vector<int64_t>& ds) {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  const int es = engine::cuda::elem_size(s), ed = engine::cuda::elem_size(d);
  for (int64_t k = 0; k < n; ++k) {
    int64_t rem = k, so = 0, dof = 0;
    for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
      so += (rem % shape[i]) * ss[i];
      dof += (rem % shape[i]) * ds[i];
      rem /= shape[i];
    }
    if (s == d)
      std::memcpy(&dst[dof * ed], &src[so * es], es);
    else
      write(&dst[dof * ed], d, read(&src[so * es], s));
  }
  return dst;
}

void check_strided(ElemType s, ElemType d, const std::vector<int64_t>& shape, const std::vector<int64_t>& ss,
                   size_t src_elems, const std::vector<int64_t>& ds, size_t dst_elems) {
  const auto src = make_source(s, d, src_elems, 5);
  const int ed = engine::cuda::elem_size(d);
  // Destination starts as a known pattern (what the kernel must not touch outside the index space stays).
  std::vector<uint8_t> initial(dst_elems * ed, 0x5a);
  const auto want = strided_reference(src, s, shape, ss, initial, d, ds);
  DeviceBuffer<uint8_t> sbuf(src.size()), dbuf(initial.size());
  cudaMemcpy(sbuf.get(), src.data(), src.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(dbuf.get(), initial.data(), initial.size(), cudaMemcpyHostToDevice);
  engine::cuda::copy_convert(nullptr, sbuf.get(), s, shape.data(), ss.data(), static_cast<int>(shape.size()),
                             dbuf.get(), d, ds.data());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_TRUE(same_values(dbuf.download(), want, d, s == ElemType::F64 || d == ElemType::F64))
      << "src " << int(s) << " dst " << int(d) << " ndim " << shape.size();
}

TEST(CudaCast, StridedLayouts) {
  SKIP_WITHOUT_GPU();
  for (ElemType s : kAll) {
    for (ElemType d :
         {ElemType::F32, ElemType::BF16, ElemType::F16, ElemType::F64, ElemType::I64, ElemType::U8}) {
      // (5, 6, 7) permuted (2, 0, 1): src strides of the transposed view, dst contiguous.
      check_strided(s, d, {7, 5, 6}, {1, 42, 7}, 210, {30, 6, 1}, 210);
      // broadcast: src (1, 33) repeated over 9 rows with stride 0
      check_strided(s, d, {9, 33}, {0, 1}, 33, {33, 1}, 297);
      // contiguous src into a transposed destination (a column-major (13, 17))
      check_strided(s, d, {13, 17}, {17, 1}, 221, {1, 13}, 221);
      // a slice: every other row of a (10, 9) matrix, last two columns, into padded rows of 4
      check_strided(s, d, {5, 2}, {18, 1}, 90, {4, 1}, 20);
    }
  }
  // 8 dimensions, none mergeable on the source side (every stride doubled)
  std::vector<int64_t> shape{2, 3, 2, 2, 3, 2, 2, 3}, ss(8), ds(8);
  int64_t s = 2, dsz = 1;
  for (int i = 7; i >= 0; --i) {
    ss[i] = s;
    ds[i] = dsz;
    s *= 2 * shape[i];
    dsz *= shape[i];
  }
  check_strided(ElemType::F32, ElemType::BF16, shape, ss, static_cast<size_t>(s), ds,
                static_cast<size_t>(dsz));
  check_strided(ElemType::BF16, ElemType::BF16, shape, ss, static_cast<size_t>(s), ds,
                static_cast<size_t>(dsz));
}

TEST(CudaCast, ScalarAndEmpty) {
  SKIP_WITHOUT_GPU();
  DeviceBuffer<float> src(std::vector<float>{2.5f});
  DeviceBuffer<double> dst(1);
  engine::cuda::copy_convert(nullptr, src.get(), ElemType::F32, nullptr, nullptr, 0, dst.get(), ElemType::F64,
                             nullptr);
  EXPECT_EQ(dst.download()[0], 2.5);
  const int64_t zero_shape[2] = {4, 0};
  engine::cuda::copy_convert(nullptr, src.get(), ElemType::F32, zero_shape, nullptr, 2, nullptr,
                             ElemType::F64,
                             nullptr);  // nothing to do: must not touch the null destination
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_THROW(engine::cuda::copy_convert(nullptr, src.get(), ElemType::F32, zero_shape, nullptr, 9,
                                          dst.get(), ElemType::F64, nullptr),
               std::exception);
}

}  // namespace
