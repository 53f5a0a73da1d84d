#include "kernels/cpu/rope.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/thread_pool.hpp"

namespace engine::cpu {

std::vector<float> rope_inv_freq(const RopeParams& p) {
  const int64_t dim = p.rotary_dim;
  const int64_t half = dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  const float base = static_cast<float>(p.theta);
  for (int64_t i = 0; i < half; ++i) {
    // torch.arange(0, dim, 2, dtype=int64).float() / dim  -> float32 division
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[static_cast<size_t>(i)] = 1.0f / std::pow(base, e);
  }
  if (p.scaling == RopeParams::kLinear) {
    const float f = static_cast<float>(p.factor);
    for (float& v : inv) v = v / f;
  } else if (p.scaling == RopeParams::kLlama3) {
    // Python scalars meet float32 tensors: the scalar is converted to float32 first (torch wrapped numbers).
    const float factor = static_cast<float>(p.factor);
    const double old_ctx = static_cast<double>(p.original_max_position);
    const float low_wavelen = static_cast<float>(old_ctx / p.low_freq_factor);
    const float high_wavelen = static_cast<float>(old_ctx / p.high_freq_factor);
    const float two_pi = static_cast<float>(2.0 * M_PI);
    const float old_ctx_f = static_cast<float>(old_ctx);
    const float low_f = static_cast<float>(p.low_freq_factor);
    const float band = static_cast<float>(p.high_freq_factor - p.low_freq_factor);
    for (float& v : inv) {
      // torch evaluates `scalar / tensor` as tensor.reciprocal() * scalar; so do we, for the same roundings.
      const float wavelen = (1.0f / v) * two_pi;
      float llama = wavelen > low_wavelen ? v / factor : v;
      const float smooth = ((1.0f / wavelen) * old_ctx_f - low_f) / band;
      const float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      v = medium ? smoothed : llama;
    }
  }
  return inv;
}

template <typename T>
void rope_apply(ThreadPool& pool, const T* x, const int32_t* positions, const float* inv_freq, int64_t B,
                int64_t T_, int64_t H, int64_t D, int64_t rotary_dim, bool inverse, T* y) {
  const int64_t half = rotary_dim / 2;
  const int64_t rows = B * T_;
  pool.parallel_for(
      rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(H * D, 1)), [=](int64_t r0, int64_t r1) {
        std::vector<T> cs(static_cast<size_t>(2 * half));  // cos (half), then sin (half)
        T* c = cs.data();
        T* s = cs.data() + half;
        for (int64_t r = r0; r < r1; ++r) {
          const int32_t pos = positions[r];
          for (int64_t i = 0; i < half; ++i) {
            if constexpr (std::is_same_v<T, float>) {
              const float a = static_cast<float>(pos) * inv_freq[i];
              c[i] = std::cos(a);
              s[i] = std::sin(a);
            } else {
              const double a =
                  static_cast<double>(static_cast<float>(pos)) * static_cast<double>(inv_freq[i]);
              c[i] = std::cos(a);
              s[i] = std::sin(a);
            }
            if (inverse) s[i] = -s[i];
          }
          for (int64_t h = 0; h < H; ++h) {
            const T* xr = x + (r * H + h) * D;  // (D)
            T* yr = y + (r * H + h) * D;
            for (int64_t i = 0; i < half; ++i) {
              const T x1 = xr[i], x2 = xr[i + half];
              yr[i] = x1 * c[i] - x2 * s[i];
              yr[i + half] = x2 * c[i] + x1 * s[i];
            }
            if (rotary_dim < D && xr != yr)
              std::memcpy(yr + rotary_dim, xr + rotary_dim, static_cast<size_t>(D - rotary_dim) * sizeof(T));
          }
        }
      });
}

template void rope_apply<float>(ThreadPool&, const float*, const int32_t*, const float*, int64_t, int64_t,
                                int64_t, int64_t, int64_t, bool, float*);
template void rope_apply<double>(ThreadPool&, const double*, const int32_t*, const float*, int64_t, int64_t,
                                 int64_t, int64_t, int64_t, bool, double*);

}  // namespace engine::cpu
