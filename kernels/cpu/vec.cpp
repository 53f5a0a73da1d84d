#include "kernels/cpu/vec.hpp"

namespace engine::cpu {

template <typename T>
ENGINE_SIMD_CLONES T row_max(const T* x, int64_t n) {
  T lane[8];
  for (int l = 0; l < 8; ++l) lane[l] = x[0];
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lane[l] = lane[l] < x[i + l] ? x[i + l] : lane[l];
  for (int l = 0; i < n; ++i, ++l) lane[l] = lane[l] < x[i] ? x[i] : lane[l];
  T m = lane[0];
  for (int l = 1; l < 8; ++l) m = m < lane[l] ? lane[l] : m;
  return m;
}

template <typename T>
ENGINE_SIMD_CLONES T exp_shifted_sum(const T* x, T shift, T* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = fast_exp(x[j] - shift);
  T lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lane[l] += y[i + l];
  for (int l = 0; i < n; ++i, ++l) lane[l] += y[i];
  return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

template float row_max<float>(const float*, int64_t);
template double row_max<double>(const double*, int64_t);
template float exp_shifted_sum<float>(const float*, float, float*, int64_t);
template double exp_shifted_sum<double>(const double*, double, double*, int64_t);

}  // namespace engine::cpu
