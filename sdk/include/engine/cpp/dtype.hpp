// engine/cpp/dtype.hpp: element types. dtype_of<T> (the eng_dtype of a C++ type), dtype_size and
// dtype_name. Header-only and C++17 like the rest of the SDK, so both plugins and the engine use this one
// table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/abi/engine.h"
#include "engine/cpp/error.hpp"

namespace engine::sdk {

// The eng_dtype of a C++ element type (float -> ENG_F32, ...), for typed data access.
template <typename T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr eng_dtype value = ENG_F32;
};
template <>
struct dtype_of<double> {
  static constexpr eng_dtype value = ENG_F64;
};
template <>
struct dtype_of<int32_t> {
  static constexpr eng_dtype value = ENG_I32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr eng_dtype value = ENG_I64;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr eng_dtype value = ENG_U8;
};
template <>
struct dtype_of<int8_t> {
  static constexpr eng_dtype value = ENG_I8;
};

// Bytes per element of a dtype, or 0 for a value eng_dtype does not define. The one table of dtype sizes:
// the engine's rt::dtype_size reads it too.
constexpr size_t dtype_size_or_zero(eng_dtype dtype) noexcept {
  switch (dtype) {
    case ENG_F32:
    case ENG_I32:
      return 4;
    case ENG_BF16:
    case ENG_F16:
      return 2;
    case ENG_F64:
    case ENG_I64:
      return 8;
    case ENG_U8:
    case ENG_I8:
    case ENG_BOOL:
      return 1;
    default:
      return 0;
  }
}

// Bytes per element of a dtype; Error for a value eng_dtype does not define.
inline size_t dtype_size(eng_dtype dtype) {
  const size_t size = dtype_size_or_zero(dtype);
  if (size == 0) throw Error("unknown dtype code " + std::to_string(dtype), ENG_ERR_INVALID_ARGUMENT);
  return size;
}

// "f32", "bf16", ...; "unknown" for a value eng_dtype does not define. The engine's rt::dtype_name reads it.
inline const char* dtype_name(eng_dtype dtype) noexcept {
  switch (dtype) {
    case ENG_F32:
      return "f32";
    case ENG_BF16:
      return "bf16";
    case ENG_F16:
      return "f16";
    case ENG_F64:
      return "f64";
    case ENG_I32:
      return "i32";
    case ENG_I64:
      return "i64";
    case ENG_U8:
      return "u8";
    case ENG_I8:
      return "i8";
    case ENG_BOOL:
      return "bool";
    default:
      return "unknown";
  }
}

}  // namespace engine::sdk
