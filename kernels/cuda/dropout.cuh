// Dropout on the GPU with the counter-based mask of kernels/cpu/dropout.hpp: the same keep decision for every
// (seed, index), bit for bit, so a CPU and a GPU run (and a replayed forward, and the backward) drop the same
// elements.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace engine::cuda {

// y[i] = keep(seed, i) ? x[i] * (1 / (1 - p)) : 0, i < n; keep(seed, i) = uniform(seed, i) >= p with
// uniform = top 53 bits of splitmix64(seed ^ splitmix64(i)) as a double in [0, 1). The backward is the same
// call on dy. T: float or __nv_bfloat16 (scale in fp32, one rounding); y may be x. p in [0, 1].
template <typename T>
void dropout_apply(cudaStream_t stream, const T* x, T* y, int64_t n, double p, uint64_t seed);

}  // namespace engine::cuda
