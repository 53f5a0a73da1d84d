// The DLPack view of an engine tensor (host->tensor_dlpack): which DLPack dtype and device each engine dtype
// and device maps to. The view borrows: data, shape and strides point into the tensor, valid while it lives.
#pragma once

#include <dlpack/dlpack.h>

#include "engine/runtime/tensor.hpp"

namespace engine::host {

// Fills `out` with a view of `t`; false (and `out` untouched) for a dtype DLPack has no code for.
bool dlpack_view(const rt::Tensor& t, DLTensor& out);

}  // namespace engine::host
