// splitmix64: the 64-bit mixing function (Steele, Lea, Flood 2014) behind the engine's counter-based random
// numbers; one definition for host and device code.
#pragma once

#include <cstdint>

#ifndef ENGINE_HOST_DEVICE
#if defined(__CUDACC__)
#define ENGINE_HOST_DEVICE __host__ __device__
#else
#define ENGINE_HOST_DEVICE
#endif
#endif

namespace engine {

ENGINE_HOST_DEVICE constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace engine
