#pragma once

#include <cstdint>

// splitmix64 (Steele, Lea and Flood, 2014): the output function of the SplitMix64 generator, a pure 64-bit
// mix of x + 0x9E3779B97F4A7C15. The one copy for the engine, its kernels (CPU and CUDA) and its
// generators: a stream seeded with s yields splitmix64(s), splitmix64(s + 0x9E3779B97F4A7C15), ...
#ifndef ENGINE_HOST_DEVICE
#if defined(__CUDACC__)
#define ENGINE_HOST_DEVICE __host__ __device__
#else
#define ENGINE_HOST_DEVICE
#endif
#endif

namespace engine {

ENGINE_HOST_DEVICE constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace engine
