// Numpy-style broadcasting for the binary ops and where (internal to engine/runtime/ops): the broadcast shape
// of two shapes, the kernel tables' Broadcast layout of contiguous operands, and the reduction a backward
// needs to sum an output-shaped gradient back to an input's shape.
//
// Rule: shapes are aligned at their last dim; along each dim the sizes are equal or one of them is 1 (a
// missing leading dim counts as 1), and the output takes the larger. (3, 1, 5) with (4, 1) gives (3, 4, 5).
#pragma once

#include <initializer_list>

#include "engine/runtime/kernel_table.hpp"
#include "engine/runtime/tensor.hpp"

namespace engine::rt::ops::detail {

// The broadcast shape of a and b; throws naming op and both shapes when a dim pair differs and neither is 1.
Dims broadcast_shape(const char* op, const Dims& a, const Dims& b);

// The layout of up to three contiguous operands (shapes broadcastable to out) read for each element of a
// contiguous output of shape out, with dims merged where every operand is contiguous across them.
Broadcast make_broadcast(const Dims& out, std::initializer_list<Dims> operands);

// grad (contiguous, of the broadcast output's shape) summed over the dims that `shape` was broadcast along,
// as a new contiguous tensor of `shape` (grad itself when the shapes are equal). Uses the device's row sums
// when shape is grad's trailing dims and its total sum when shape has one element; reduce_to otherwise.
Tensor sum_to_shape(const Tensor& grad, const Dims& shape);

}  // namespace engine::rt::ops::detail
