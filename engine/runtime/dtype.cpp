#include "engine/runtime/dtype.hpp"

#include <cstddef>
#include <cstring>

#include <string>

#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
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

// ---- one element as double (copies between dtypes, tests) ---------------------------------------------

double load_as_double(const void* src, DType t) {
  const auto* p = static_cast<const std::byte*>(src);
  switch (t) {
    case ENG_F32: { float v; std::memcpy(&v, p, 4); return v; }
    case ENG_F64: { double v; std::memcpy(&v, p, 8); return v; }
    case ENG_BF16: { uint16_t v; std::memcpy(&v, p, 2); return bf16_to_f32(v); }
    case ENG_F16: { uint16_t v; std::memcpy(&v, p, 2); return f16_to_f32(v); }
    case ENG_I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case ENG_I64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
    case ENG_U8: return static_cast<double>(*reinterpret_cast<const uint8_t*>(p));
    case ENG_I8: return static_cast<double>(*reinterpret_cast<const int8_t*>(p));
    case ENG_BOOL: return *reinterpret_cast<const uint8_t*>(p) ? 1.0 : 0.0;
    default: fail("unknown dtype code {}", t);
  }
}

void store_from_double(void* dst, DType t, double x) {
  auto* p = static_cast<std::byte*>(dst);
  switch (t) {
    case ENG_F32: { float v = static_cast<float>(x); std::memcpy(p, &v, 4); return; }
    case ENG_F64: { std::memcpy(p, &x, 8); return; }
    case ENG_BF16: { uint16_t v = f32_to_bf16(static_cast<float>(x)); std::memcpy(p, &v, 2); return; }
    case ENG_F16: { uint16_t v = f32_to_f16(static_cast<float>(x)); std::memcpy(p, &v, 2); return; }
    case ENG_I32: { int32_t v = static_cast<int32_t>(x); std::memcpy(p, &v, 4); return; }
    case ENG_I64: { int64_t v = static_cast<int64_t>(x); std::memcpy(p, &v, 8); return; }
    case ENG_U8: *reinterpret_cast<uint8_t*>(p) = static_cast<uint8_t>(x); return;
    case ENG_I8: *reinterpret_cast<int8_t*>(p) = static_cast<int8_t>(x); return;
    case ENG_BOOL: *reinterpret_cast<uint8_t*>(p) = x != 0.0; return;
    default: fail("unknown dtype code {}", t);
  }
}

}  // namespace engine::rt
