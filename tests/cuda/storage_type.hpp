// Typed-test support for kernels templated on the storage type T in {float, __nv_bfloat16}: host values to T
// and back, the CPU reference's view of the inputs (rounded to bf16 first for bf16), and the tolerance of
// cuda_test_support.hpp for T (fp32 1e-5, bf16 1e-2; same error norm, rel_error).
#pragma once

#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <type_traits>
#include <vector>

#include "tests/cuda/cuda_test_support.hpp"

namespace engine::cuda_test {

using StorageTypes = ::testing::Types<float, __nv_bfloat16>;

template <typename T>
inline constexpr bool kIsBf16 = std::is_same_v<T, __nv_bfloat16>;

// Host floats as the device storage type.
template <typename T>
std::vector<T> to_storage(const std::vector<float>& v) {
  if constexpr (kIsBf16<T>)
    return to_bf16(v);
  else
    return v;
}

// Device storage values back as floats.
template <typename T>
std::vector<float> to_float(const std::vector<T>& v) {
  if constexpr (kIsBf16<T>)
    return from_bf16(v);
  else
    return v;
}

// What the device holds after upload, as floats: the CPU reference runs on these.
template <typename T>
std::vector<float> as_stored(const std::vector<float>& v) {
  return to_float<T>(to_storage<T>(v));
}

// Tolerance for outputs stored in T.
template <typename T>
constexpr double tolerance() {
  return kIsBf16<T> ? 1e-2 : 1e-5;
}

// Tolerance for fp32 statistics (rstd, lse, row losses) computed in fp32 from the same stored inputs on both
// sides: they differ only by the order of fp32 sums, whatever T is.
inline constexpr double kStatTolerance = 1e-5;

}  // namespace engine::cuda_test
