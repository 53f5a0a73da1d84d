// 16-byte vector access for memory-bound elementwise kernels: 4 f32 or 8 bf16 per load and store (one
// 128-bit transaction per thread instead of 4 or 8 narrow ones), for buffers whose pointers are 16-byte
// aligned and whose length is a whole number of vectors (or with a scalar tail done separately).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

namespace engine::cuda::detail {

template <typename T>
constexpr int kVec16 = 16 / sizeof(T);

// Whether T has the 16-byte path (f32 and bf16: the types the training step runs in).
template <typename T>
constexpr bool kHasVec16 = std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>;

// Every pointer 16-byte aligned and T with a vector path.
template <typename T>
inline bool aligned16(std::initializer_list<const void*> ptrs) {
  if constexpr (!kHasVec16<T>) {
    return false;
  } else {
    for (const void* p : ptrs)
      if (p != nullptr && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
    return true;
  }
}

template <typename T>
struct alignas(16) Vec16 {
  T v[kVec16<T>];
};

template <typename T>
__device__ __forceinline__ Vec16<T> load16(const T* p, int64_t i) {
  return reinterpret_cast<const Vec16<T>*>(p)[i];
}

template <typename T>
__device__ __forceinline__ void store16(T* p, int64_t i, const Vec16<T>& x) {
  reinterpret_cast<Vec16<T>*>(p)[i] = x;
}

}  // namespace engine::cuda::detail
