// The fused linear + cross-entropy node with an explicit chunk size (rows of logits formed at once).
// ops.hpp's make_linear_cross_entropy sizes chunks from a byte budget (kernels/cpu/cross_entropy.hpp); tests
// and benchmarks use this to force several chunks on small shapes or to compare chunk sizes.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/runtime/node.hpp"

namespace engine::rt::ops {

// chunk_rows <= 0: the byte-budget default.
std::unique_ptr<Node> make_linear_cross_entropy_chunked(int64_t ignore_index, double scale,
                                                        int64_t chunk_rows);

}  // namespace engine::rt::ops
