// engine/core/float16.hpp against torch's conversions (tests/data/io/float16_cases.safetensors, written by
// scripts/fixtures/make_io_fixtures.py), plus exhaustive round trips over every 16-bit pattern.
#include "engine/core/float16.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "engine/io/safetensors.hpp"
#include "tests/unit/io/test_files.hpp"

namespace engine {
namespace {

using io::SafetensorsFile;

template <typename T>
std::vector<T> load(const SafetensorsFile& file, std::string_view name) {
  const io::SafetensorsTensor t = file.tensor(name);
  std::vector<T> out(t.nbytes / sizeof(T));
  EXPECT_EQ(out.size() * sizeof(T), t.nbytes);
  std::memcpy(out.data(), t.data, t.nbytes);
  return out;
}

bool is_nan16(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0; }
bool is_nan_bf16(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x007fu) != 0; }
uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }

class Float16Torch : public ::testing::Test {
 protected:
  SafetensorsFile file = SafetensorsFile::open(io::testing::io_data_dir() / "float16_cases.safetensors");
};

TEST_F(Float16Torch, Fp32ToBf16MatchesTorchBitForBit) {
  const auto in = load<uint32_t>(file, "f32_in");
  const auto expected = load<uint16_t>(file, "bf16_out");
  ASSERT_EQ(in.size(), expected.size());
  ASSERT_GT(in.size(), 2000u);
  size_t nans = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const uint16_t got = f32_to_bf16_bits(std::bit_cast<float>(in[i]));
    if (std::isnan(std::bit_cast<float>(in[i]))) {
      // torch's NaN bit pattern is not a contract (its scalar and vector paths differ): NaN must stay NaN,
      // keep its sign, and be quiet.
      ++nans;
      EXPECT_TRUE(is_nan_bf16(got)) << std::hex << in[i];
      EXPECT_TRUE(is_nan_bf16(expected[i])) << std::hex << in[i];
      EXPECT_EQ(got & 0x8000u, (in[i] >> 16) & 0x8000u);
      EXPECT_NE(got & 0x0040u, 0u);
      continue;
    }
    EXPECT_EQ(got, expected[i]) << "input bits 0x" << std::hex << in[i];
  }
  EXPECT_GT(nans, 5u);
}

TEST_F(Float16Torch, Fp32ToFp16MatchesTorchBitForBitIncludingNaN) {
  const auto in = load<uint32_t>(file, "f32_in");
  const auto expected = load<uint16_t>(file, "f16_out");
  ASSERT_EQ(in.size(), expected.size());
  size_t subnormal_results = 0, infinities = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const uint16_t got = f32_to_f16_bits(std::bit_cast<float>(in[i]));
    EXPECT_EQ(got, expected[i]) << "input bits 0x" << std::hex << in[i];
    if ((expected[i] & 0x7c00u) == 0 && (expected[i] & 0x3ffu) != 0) ++subnormal_results;
    if ((expected[i] & 0x7fffu) == 0x7c00u) ++infinities;
  }
  EXPECT_GT(subnormal_results, 20u);  // the fixture exercises fp16 subnormals and overflow
  EXPECT_GT(infinities, 10u);
}

TEST_F(Float16Torch, Fp16ToFp32MatchesTorch) {
  const auto in = load<uint16_t>(file, "f16_in");
  const auto expected = load<uint32_t>(file, "f16_in_as_f32");
  ASSERT_EQ(in.size(), expected.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const float got = f16_bits_to_f32(in[i]);
    if (is_nan16(in[i])) {
      EXPECT_TRUE(std::isnan(got));
      EXPECT_TRUE(std::isnan(std::bit_cast<float>(expected[i])));
      EXPECT_EQ(bits_of(got) >> 31, static_cast<uint32_t>(in[i] >> 15));  // sign kept
      continue;
    }
    EXPECT_EQ(bits_of(got), expected[i]) << "fp16 bits 0x" << std::hex << in[i];
  }
}

TEST_F(Float16Torch, Bf16ToFp32MatchesTorch) {
  const auto in = load<uint16_t>(file, "bf16_in");
  const auto expected = load<uint32_t>(file, "bf16_in_as_f32");
  ASSERT_EQ(in.size(), expected.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const float got = bf16_bits_to_f32(in[i]);
    if (is_nan_bf16(in[i])) {
      EXPECT_TRUE(std::isnan(got));
      continue;
    }
    EXPECT_EQ(bits_of(got), expected[i]) << "bf16 bits 0x" << std::hex << in[i];
  }
}

TEST(Float16, EveryNonNanPatternRoundTripsThroughFp32) {
  for (uint32_t h = 0; h <= 0xffffu; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    if (!is_nan16(bits)) {
      ASSERT_EQ(f32_to_f16_bits(f16_bits_to_f32(bits)), bits) << std::hex << h;
    } else {
      ASSERT_TRUE(is_nan16(f32_to_f16_bits(f16_bits_to_f32(bits)))) << std::hex << h;
    }
    if (!is_nan_bf16(bits)) {
      ASSERT_EQ(f32_to_bf16_bits(bf16_bits_to_f32(bits)), bits) << std::hex << h;
    } else {
      ASSERT_TRUE(is_nan_bf16(f32_to_bf16_bits(bf16_bits_to_f32(bits)))) << std::hex << h;
    }
  }
}

TEST(Float16, KnownValuesAndTies) {
  // Compile-time use works too.
  static_assert(f32_to_bf16_bits(1.0f) == 0x3f80);
  static_assert(f32_to_f16_bits(1.0f) == 0x3c00);
  EXPECT_EQ(f32_to_f16_bits(65504.0f), 0x7bffu);
  EXPECT_EQ(f32_to_f16_bits(65519.0f), 0x7bffu);
  EXPECT_EQ(f32_to_f16_bits(65520.0f), 0x7c00u);               // tie above max: to Inf
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.0f, -25)), 0x0000u);  // tie between 0 and 2^-24: to 0
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(3.0f, -25)), 0x0002u);  // tie 1.5 * 2^-24: to even 2
  EXPECT_EQ(f32_to_f16_bits(-std::ldexp(1.0f, -24)), 0x8001u);
  EXPECT_EQ(f32_to_bf16_bits(std::bit_cast<float>(0x3f808000u)), 0x3f80u);  // tie, kept part even: down
  EXPECT_EQ(f32_to_bf16_bits(std::bit_cast<float>(0x3f818000u)), 0x3f82u);  // tie, kept part odd: up
  EXPECT_EQ(f32_to_bf16_bits(std::bit_cast<float>(0x7f7fffffu)), 0x7f80u);  // FLT_MAX rounds to Inf
  EXPECT_EQ(f32_to_bf16_bits(-INFINITY), 0xff80u);
  EXPECT_EQ(f16_bits_to_f32(0x0001), std::ldexp(1.0f, -24));
}

TEST(Float16, BulkHelpersMatchScalarAndCheckSizes) {
  const std::vector<float> src = {0.0f, -1.5f, 3.14159f, 1e-7f, 70000.0f, -0.0f, NAN};
  std::vector<uint16_t> h(src.size()), b(src.size());
  f32_to_f16(std::span<const float>(src), std::span<uint16_t>(h));
  f32_to_bf16(std::span<const float>(src), std::span<uint16_t>(b));
  std::vector<float> back_h(src.size()), back_b(src.size());
  f16_to_f32(std::span<const uint16_t>(h), std::span<float>(back_h));
  bf16_to_f32(std::span<const uint16_t>(b), std::span<float>(back_b));
  for (size_t i = 0; i < src.size(); ++i) {
    EXPECT_EQ(h[i], f32_to_f16_bits(src[i]));
    EXPECT_EQ(b[i], f32_to_bf16_bits(src[i]));
    EXPECT_EQ(bits_of(back_h[i]), bits_of(f16_bits_to_f32(h[i])));
    EXPECT_EQ(bits_of(back_b[i]), bits_of(bf16_bits_to_f32(b[i])));
  }
  std::vector<uint16_t> short_dst(2);
  EXPECT_THROW(f32_to_f16(std::span<const float>(src), std::span<uint16_t>(short_dst)), Error);
}

}  // namespace
}  // namespace engine
