// bfloat16 and IEEE half (fp16) <-> fp32 conversions on raw bit patterns, header-only.
//
// Formats (sign | exponent | mantissa):
//   fp32: 1 | 8 (bias 127) | 23      bf16: 1 | 8 (bias 127) | 7      fp16: 1 | 5 (bias 15) | 10
// bf16 is the top half of an fp32, so bf16 -> fp32 is a shift; fp32 -> bf16 rounds the low 16 bits away.
// fp32 -> fp16 rebiases the exponent and rounds 13 mantissa bits away (more below 2^-14, where fp16 is
// subnormal). Narrowing rounds to nearest, ties to even, as torch does; values beyond the largest finite
// narrow value round to +-Inf (fp16: |x| >= 65520), Inf stays Inf, and values below the narrow format's
// smallest subnormal round to (signed) zero; nothing is flushed that rounding would keep.
//
// NaN: a NaN always stays a NaN, with its sign, and comes out quiet (the top mantissa bit set), keeping the
// top payload bits: fp32 -> fp16 matches x86 F16C (and torch's CPU fp16 path) bit for bit. For bf16 and for
// widening conversions torch's exact NaN bit patterns differ between its scalar and vectorised paths, so no
// code should depend on them; here they follow the same rule as fp16 (sign kept, quiet, payload truncated
// or widened).
//
// Widening (bf16 -> fp32, fp16 -> fp32) is exact for every non-NaN value.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/core/error.hpp"

namespace engine {

// ---- bfloat16 --------------------------------------------------------------------------------------

// fp32 -> bf16 bits, round to nearest even.
constexpr uint16_t f32_to_bf16_bits(float value) noexcept {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep sign and top payload bits, force quiet
    return static_cast<uint16_t>((x >> 16) | 0x0040u);
  }
  // Adding 0x7fff (+1 when the kept lsb is odd) carries into the kept bits exactly when the dropped half is
  // above one half ulp, or exactly one half with an odd kept part. A carry out of the mantissa bumps the
  // exponent, which also turns the largest finite values into Inf as it should.
  const uint32_t rounding_bias = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding_bias) >> 16);
}

// bf16 bits -> fp32, exact.
constexpr float bf16_bits_to_f32(uint16_t bits) noexcept {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

// ---- fp16 ------------------------------------------------------------------------------------------

// fp32 -> fp16 bits, round to nearest even.
constexpr uint16_t f32_to_f16_bits(float value) noexcept {
  const uint32_t w = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((w >> 16) & 0x8000u);
  const uint32_t x = w & 0x7fffffffu;  // |value|
  if (x > 0x7f800000u) {               // NaN: quiet, top 10 payload bits kept
    return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x03ffu));
  }
  if (x >= 0x477ff000u) {  // |value| >= 65520 (half way between 65504 and 65536, ties to even = up): Inf
    return static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (x >= 0x38800000u) {  // |value| >= 2^-14: normal fp16. Rebias exponent (127 -> 15), round 13 bits.
    const uint32_t rebiased = x - 0x38000000u;
    const uint32_t rounding_bias = 0x0fffu + ((x >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rebiased + rounding_bias) >> 13));
  }
  if (x <= 0x33000000u) {  // |value| <= 2^-25 (half of the smallest subnormal; the tie goes to even = 0)
    return sign;
  }
  // Subnormal fp16: result = |value| / 2^-24 rounded. |value| = mantissa * 2^(e - 150), with the implicit
  // bit; so the result is mantissa >> (126 - e), with e in [102, 112] and the shift in [14, 24].
  const uint32_t exponent = x >> 23;
  const uint32_t mantissa = (x & 0x007fffffu) | 0x00800000u;
  const uint32_t shift = 126u - exponent;
  uint32_t result = mantissa >> shift;
  const uint32_t remainder = mantissa & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (remainder > half || (remainder == half && (result & 1u))) {
    ++result;  // may carry into the exponent field: 0x3ff + 1 = 0x400 is the smallest normal, correctly
  }
  return static_cast<uint16_t>(sign | result);
}

// fp16 bits -> fp32, exact.
constexpr float f16_bits_to_f32(uint16_t bits) noexcept {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x03ffu;
  if (exponent == 0x1fu) {  // Inf (mantissa 0) or NaN (made quiet, payload widened)
    const uint32_t quiet = mantissa != 0 ? 0x00400000u : 0u;
    return std::bit_cast<float>(sign | 0x7f800000u | quiet | (mantissa << 13));
  }
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in fp32
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(magnitude));
  }
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));  // 112 = 127 - 15
}

// ---- bulk conversions (dst and src must not overlap) ----------------------------------------------

inline void f32_to_bf16(const float* src, uint16_t* dst, size_t count) noexcept {
  for (size_t i = 0; i < count; ++i) dst[i] = f32_to_bf16_bits(src[i]);
}
inline void bf16_to_f32(const uint16_t* src, float* dst, size_t count) noexcept {
  for (size_t i = 0; i < count; ++i) dst[i] = bf16_bits_to_f32(src[i]);
}
inline void f32_to_f16(const float* src, uint16_t* dst, size_t count) noexcept {
  for (size_t i = 0; i < count; ++i) dst[i] = f32_to_f16_bits(src[i]);
}
inline void f16_to_f32(const uint16_t* src, float* dst, size_t count) noexcept {
  for (size_t i = 0; i < count; ++i) dst[i] = f16_bits_to_f32(src[i]);
}

// Span forms: the sizes must match (engine::Error otherwise).
namespace detail {
inline void check_same_count(size_t src, size_t dst, const char* what) {
  if (src != dst) fail("{}: source has {} elements but destination has {}", what, src, dst);
}
}  // namespace detail

inline void f32_to_bf16(std::span<const float> src, std::span<uint16_t> dst) {
  detail::check_same_count(src.size(), dst.size(), "f32_to_bf16");
  f32_to_bf16(src.data(), dst.data(), src.size());
}
inline void bf16_to_f32(std::span<const uint16_t> src, std::span<float> dst) {
  detail::check_same_count(src.size(), dst.size(), "bf16_to_f32");
  bf16_to_f32(src.data(), dst.data(), src.size());
}
inline void f32_to_f16(std::span<const float> src, std::span<uint16_t> dst) {
  detail::check_same_count(src.size(), dst.size(), "f32_to_f16");
  f32_to_f16(src.data(), dst.data(), src.size());
}
inline void f16_to_f32(std::span<const uint16_t> src, std::span<float> dst) {
  detail::check_same_count(src.size(), dst.size(), "f16_to_f32");
  f16_to_f32(src.data(), dst.data(), src.size());
}

// Scalar forms used by engine/runtime (the runtime's original float16.hpp API).
inline float bf16_to_f32(uint16_t h) noexcept { return bf16_bits_to_f32(h); }
inline uint16_t f32_to_bf16(float f) noexcept { return f32_to_bf16_bits(f); }
inline float f16_to_f32(uint16_t h) noexcept { return f16_bits_to_f32(h); }
inline uint16_t f32_to_f16(float f) noexcept { return f32_to_f16_bits(f); }

}  // namespace engine
