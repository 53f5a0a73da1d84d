// Softmax over the last dim: y = exp(x - max) / sum exp(x - max).
// Backward: dx = y * (dy - sum(dy * y)).
//
// x, y: (N, C) row-major; rows are independent and split over threads; each row is reduced in order, so
// results do not depend on the thread count. Max-subtraction keeps exp in range for any logits.
#pragma once

#include <cstdint>

namespace engine::cpu {

class ThreadPool;

template <typename T>
void softmax_forward(ThreadPool& pool, const T* x, T* y, int64_t N, int64_t C);
template <typename T>
void softmax_backward(ThreadPool& pool, const T* dy, const T* y, T* dx, int64_t N, int64_t C);

}  // namespace engine::cpu
