// RoPE, Hugging Face convention (rotate_half: dimension i pairs with i + rotary_dim/2, not interleaved
// pairs).
//
// For position p and i < h = rotary_dim / 2, with a = p * inv_freq[i]:
//   y[i]     = x[i]     * cos a - x[i + h] * sin a
//   y[i + h] = x[i + h] * cos a + x[i]     * sin a
// and dimensions >= rotary_dim pass through. The backward is the rotation by -a (the transpose).
//
// inv_freq follows transformers' rope init functions step by step in float32 so that angles match bit for
// bit:
//   default: inv_freq[i] = 1 / theta ** (float(2i) / dim)               (float32 arange, float32 pow)
//   linear:  inv_freq / factor
//   llama3:  _compute_llama3_parameters: wavelen = 2 pi / inv_freq; wavelengths above
//            original_max_position / low_freq_factor are divided by factor, those below
//            original_max_position / high_freq_factor kept, and the band between smoothly interpolated.
// (torch computes `scalar / tensor` as reciprocal(tensor) * scalar; the llama3 code repeats that order.)
// The angle is float32(p) * inv_freq (float32), as transformers' float32 matmul of inv_freq and positions;
// f64 compute takes the same float32 inv_freq and forms the angle and cos/sin in double.
//
// x, y: (B, T, H, D) row-major, positions: (B, T) int32. Split over (b, t) rows: cos/sin are computed once
// per token and applied to all H heads.
#pragma once

#include <cstdint>
#include <vector>

namespace engine::cpu {

class ThreadPool;

struct RopeParams {
  enum Scaling { kNone = 0, kLlama3 = 1, kLinear = 2 };
  double theta = 10000.0;
  int64_t rotary_dim = 0;
  int scaling = kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

// (rotary_dim / 2) inverse frequencies in float32.
std::vector<float> rope_inv_freq(const RopeParams& p);

// inverse = false: forward rotation; true: rotation by -angle (the backward of the forward).
template <typename T>
void rope_apply(ThreadPool& pool, const T* x, const int32_t* positions, const float* inv_freq, int64_t B,
                int64_t T_, int64_t H, int64_t D, int64_t rotary_dim, bool inverse, T* y);

}  // namespace engine::cpu
