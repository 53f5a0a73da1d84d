// NF4 (NormalFloat4, Dettmers et al. 2023, "QLoRA") in bitsandbytes' storage format (bitsandbytes 0.50.2):
//   - the 16-value code book of get_4bit_type("nf4") (bitsandbytes/functional.py), sorted, index = 4-bit code;
//   - blockwise absmax over the flattened (out * in) weight, block 64 by default;
//   - quantize as backends/default/ops.py quantize_4bit: scaled = clamp(x * (1 / absmax), -1, 1) (the last,
//     partial block: x / absmax), code = bucketize(scaled, midpoints of the code book) (the lower code when
//     exactly on a midpoint);
//   - packed two codes per byte, the first element in the high nibble: byte = (q[2i] << 4) | q[2i + 1];
//   - dequantize as dequantize_4bit: code[q] * absmax in fp32, then rounded to the output dtype;
//   - double quantization (functional.quantize_4bit(compress_statistics=True)): offset = mean(absmax), the
//     absmax - offset values quantized blockwise (block 256) into the signed 8-bit dynamic map
//     (create_dynamic_map(signed=True)) with quantize_blockwise's rule (x * (1 / nested_absmax), bucketize
//     against the midpoints); dequantized as code8[c] * nested_absmax + offset.
// Storage per weight element: 0.5 B of codes + 4/64 B of absmax (0.5625), or with double quantization 0.5 + 1/64
// + 4/(64 * 256) B (0.5159).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "plugins/adamw8bit/blockwise8.hpp"  // bitsandbytes' dynamic map (the nested absmax code)

namespace nf4 {

inline constexpr float kCode[16] = {-1.0f,
                                    -0.6961928009986877f,
                                    -0.5250730514526367f,
                                    -0.39491748809814453f,
                                    -0.28444138169288635f,
                                    -0.18477343022823334f,
                                    -0.09105003625154495f,
                                    0.0f,
                                    0.07958029955625534f,
                                    0.16093020141124725f,
                                    0.24611230194568634f,
                                    0.33791524171829224f,
                                    0.44070982933044434f,
                                    0.5626170039176941f,
                                    0.7229568362236023f,
                                    1.0f};

inline constexpr int64_t kNestedBlock = 256;

// bucketize(x, bounds, right=False): the number of bounds strictly below x.
inline int bucketize(const float* bounds, int count, float x) {
  int i = 0;
  while (i < count && bounds[i] < x) ++i;
  return i;
}

inline const float* nf4_bounds() {
  static const std::vector<float> b = [] {
    std::vector<float> v(15);
    for (int i = 0; i < 15; ++i) v[static_cast<size_t>(i)] = (kCode[i] + kCode[i + 1]) / 2.0f;
    return v;
  }();
  return b.data();
}

inline const float* dynamic_bounds() {
  static const std::vector<float> b = [] {
    const auto& m = adamw8bit::signed_map();
    std::vector<float> v(255);
    for (int i = 0; i < 255; ++i) v[static_cast<size_t>(i)] = (m[static_cast<size_t>(i)] + m[static_cast<size_t>(i) + 1]) / 2.0f;
    return v;
  }();
  return b.data();
}

// The index of the first bound >= x in 255 sorted bounds (binary search; = bucketize).
inline uint8_t bucketize255(const float* bounds, float x) {
  int lo = 0, hi = 255;  // answer in [lo, hi]
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (bounds[mid] < x) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return static_cast<uint8_t>(lo);
}

inline float clamp1(float x) { return std::min(1.0f, std::max(-1.0f, x)); }

// Quantizes n fp32 values (n even) with block `blocksize`: packed (n / 2) bytes, absmax (ceil(n / blocksize)).
inline void quantize(const float* x, int64_t n, int64_t blocksize, uint8_t* packed, float* absmax) {
  const float* bounds = nf4_bounds();
  const int64_t full = n - n % blocksize;
  uint8_t pending = 0;
  for (int64_t b = 0, begin = 0; begin < n; ++b, begin += blocksize) {
    const int64_t len = std::min(blocksize, n - begin);
    float am = 0.0f;
    for (int64_t i = 0; i < len; ++i) am = std::max(am, std::fabs(x[begin + i]));
    const float safe = std::max(am, 1e-38f);
    absmax[b] = begin < full ? am : safe;  // bitsandbytes clamps only the partial block's stored absmax
    const float inv = 1.0f / safe;
    for (int64_t i = 0; i < len; ++i) {
      const int64_t k = begin + i;
      const float s = clamp1(begin < full ? x[k] * inv : x[k] / safe);
      const uint8_t q = static_cast<uint8_t>(bucketize(bounds, 15, s));
      if (k % 2 == 0) {
        pending = static_cast<uint8_t>(q << 4);
      } else {
        packed[k / 2] = static_cast<uint8_t>(pending | q);
      }
    }
  }
  if (n % 2 != 0) packed[n / 2] = pending;  // padded with code 0 in the low nibble, as bitsandbytes pads
}

// Double quantization of `count` absmax values: offset, codes (count), nested absmax (ceil(count / 256)).
inline float quantize_absmax(const float* absmax, int64_t count, uint8_t* codes, float* nested) {
  double sum = 0.0;  // accumulated in double and rounded once (torch's fp32 mean may differ in the last bit;
  for (int64_t i = 0; i < count; ++i) sum += absmax[i];  // a pre-quantized checkpoint carries its own offset)
  const float offset = count > 0 ? static_cast<float>(sum / static_cast<double>(count)) : 0.0f;
  const float* bounds = dynamic_bounds();
  const int64_t full = count - count % kNestedBlock;
  std::vector<float> centred(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) centred[static_cast<size_t>(i)] = absmax[i] - offset;
  for (int64_t b = 0, begin = 0; begin < count; ++b, begin += kNestedBlock) {
    const int64_t len = std::min(kNestedBlock, count - begin);
    float am = 0.0f;
    for (int64_t i = 0; i < len; ++i) am = std::max(am, std::fabs(centred[static_cast<size_t>(begin + i)]));
    const float safe = std::max(am, 1e-38f);
    nested[b] = begin < full ? am : safe;
    const float inv = 1.0f / safe;
    for (int64_t i = 0; i < len; ++i) {
      const float v = centred[static_cast<size_t>(begin + i)];
      codes[begin + i] = bucketize255(bounds, clamp1(begin < full ? v * inv : v / safe));
    }
  }
  return offset;
}

// The absmax values back from double quantization.
inline void dequantize_absmax(const uint8_t* codes, const float* nested, float offset, int64_t count, float* out) {
  const auto& m = adamw8bit::signed_map();
  for (int64_t i = 0; i < count; ++i) out[i] = m[codes[i]] * nested[i / kNestedBlock] + offset;
}

inline uint16_t f32_to_bf16_bits(float f) {  // round to nearest even, as torch's .to(bfloat16)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Dequantizes n elements into fp32 (out_f32) or bf16 bits (out_bf16), whichever is non-null.
inline void dequantize(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize, float* out_f32,
                       uint16_t* out_bf16) {
  for (int64_t b = 0, begin = 0; begin < n; ++b, begin += blocksize) {
    const int64_t len = std::min(blocksize, n - begin);
    const float am = absmax[b];
    for (int64_t i = 0; i < len; ++i) {
      const int64_t k = begin + i;
      const uint8_t byte = packed[k / 2];
      const float v = kCode[k % 2 == 0 ? byte >> 4 : byte & 0xF] * am;
      if (out_f32 != nullptr) {
        out_f32[k] = v;
      } else {
        out_bf16[k] = f32_to_bf16_bits(v);
      }
    }
  }
}

}  // namespace nf4
