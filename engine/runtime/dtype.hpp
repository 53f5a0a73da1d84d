// Element types of runtime tensors: the ABI's eng_dtype values, with their sizes and names (read from the
// SDK's one table, engine/cpp/dtype.hpp; these throw engine::Error).
#pragma once

#include <cstddef>
#include <string_view>

#include "engine/abi/engine.h"

namespace engine::rt {

using DType = eng_dtype;

size_t dtype_size(DType dtype);       // engine::Error for a value eng_dtype does not define
const char* dtype_name(DType dtype);  // "f32", "bf16", ...
bool dtype_is_float(DType dtype);
// Parses "f32"/"fp32"/"float32", "bf16"/"bfloat16", ...; throws engine::Error listing the accepted names.
DType parse_dtype(std::string_view name);

}  // namespace engine::rt
