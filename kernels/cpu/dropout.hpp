// Dropout with a counter-based mask: element i is kept when uniform(seed, i) >= p, and scaled by 1 / (1 - p).
//
// uniform(seed, i) is the top 53 bits of splitmix64(seed ^ splitmix64(i)) (engine/core/splitmix64.hpp) as a
// double in [0, 1): a pure function of (seed, index), so the mask needs no storage, is identical when
// activation checkpointing replays the forward and in backward, and does not depend on threads. x, y: n
// contiguous elements.
#pragma once

#include <cstdint>

namespace engine::cpu {

class ThreadPool;

bool dropout_keep(uint64_t seed, uint64_t index, double p);

// y = keep(i) ? x / (1 - p) : 0. The backward is the same map applied to dy.
template <typename T>
void dropout_apply(ThreadPool& pool, const T* x, T* y, int64_t n, double p, uint64_t seed);

}  // namespace engine::cpu
