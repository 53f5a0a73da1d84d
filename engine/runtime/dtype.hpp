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

// One element of type `dtype` at p, as double; and a double stored as one element of `dtype` (rounded to nearest
// even for bf16/f16, truncated for integers). Host memory.
double load_as_double(const void* p, DType dtype);
void store_from_double(void* p, DType dtype, double value);

}  // namespace engine::rt
