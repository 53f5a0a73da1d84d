#include "engine/runtime/dtype.hpp"

#include <string>

#include "engine/core/error.hpp"
#include "engine/cpp/dtype.hpp"

namespace engine::rt {

size_t dtype_size(DType dtype) {
  const size_t size = sdk::dtype_size_or_zero(dtype);
  if (size == 0) fail("unknown dtype code {}", dtype);
  return size;
}

const char* dtype_name(DType dtype) { return sdk::dtype_name(dtype); }

bool dtype_is_float(DType dtype) {
  return dtype == ENG_F32 || dtype == ENG_BF16 || dtype == ENG_F16 || dtype == ENG_F64;
}

DType parse_dtype(std::string_view name) {
  const std::string n(name);
  if (n == "f32" || n == "fp32" || n == "float32" || n == "float") return ENG_F32;
  if (n == "bf16" || n == "bfloat16") return ENG_BF16;
  if (n == "f16" || n == "fp16" || n == "float16" || n == "half") return ENG_F16;
  if (n == "f64" || n == "fp64" || n == "float64" || n == "double") return ENG_F64;
  if (n == "i32" || n == "int32") return ENG_I32;
  if (n == "i64" || n == "int64") return ENG_I64;
  if (n == "u8" || n == "uint8") return ENG_U8;
  if (n == "i8" || n == "int8") return ENG_I8;
  if (n == "bool") return ENG_BOOL;
  fail("unknown dtype '{}': use one of fp32, bf16, fp16, fp64, int32, int64, uint8, int8, bool", n);
}

}  // namespace engine::rt
