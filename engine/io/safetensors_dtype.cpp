#include "engine/io/safetensors_dtype.hpp"

#include <array>

#include "engine/core/error.hpp"

namespace engine::io {
namespace {

struct DtypeInfo {
  SafetensorsDtype dtype;
  std::string_view name;
  size_t size;
};

constexpr std::array<DtypeInfo, 15> kDtypes{{
    {SafetensorsDtype::BOOL, "BOOL", 1},
    {SafetensorsDtype::U8, "U8", 1},
    {SafetensorsDtype::I8, "I8", 1},
    {SafetensorsDtype::F8_E5M2, "F8_E5M2", 1},
    {SafetensorsDtype::F8_E4M3, "F8_E4M3", 1},
    {SafetensorsDtype::I16, "I16", 2},
    {SafetensorsDtype::U16, "U16", 2},
    {SafetensorsDtype::F16, "F16", 2},
    {SafetensorsDtype::BF16, "BF16", 2},
    {SafetensorsDtype::I32, "I32", 4},
    {SafetensorsDtype::U32, "U32", 4},
    {SafetensorsDtype::F32, "F32", 4},
    {SafetensorsDtype::F64, "F64", 8},
    {SafetensorsDtype::I64, "I64", 8},
    {SafetensorsDtype::U64, "U64", 8},
}};

const DtypeInfo& info(SafetensorsDtype dtype) noexcept { return kDtypes[static_cast<size_t>(dtype)]; }

}  // namespace

std::string_view dtype_name(SafetensorsDtype dtype) noexcept { return info(dtype).name; }

size_t dtype_size(SafetensorsDtype dtype) noexcept { return info(dtype).size; }

std::optional<SafetensorsDtype> parse_dtype(std::string_view name) noexcept {
  for (const DtypeInfo& d : kDtypes) {
    if (d.name == name) return d.dtype;
  }
  return std::nullopt;
}

std::optional<eng_dtype> to_eng_dtype(SafetensorsDtype dtype) noexcept {
  switch (dtype) {
    case SafetensorsDtype::F32:
      return ENG_F32;
    case SafetensorsDtype::BF16:
      return ENG_BF16;
    case SafetensorsDtype::F16:
      return ENG_F16;
    case SafetensorsDtype::F64:
      return ENG_F64;
    case SafetensorsDtype::I32:
      return ENG_I32;
    case SafetensorsDtype::I64:
      return ENG_I64;
    case SafetensorsDtype::U8:
      return ENG_U8;
    case SafetensorsDtype::I8:
      return ENG_I8;
    case SafetensorsDtype::BOOL:
      return ENG_BOOL;
    default:
      return std::nullopt;
  }
}

SafetensorsDtype from_eng_dtype(eng_dtype dtype) {
  switch (dtype) {
    case ENG_F32:
      return SafetensorsDtype::F32;
    case ENG_BF16:
      return SafetensorsDtype::BF16;
    case ENG_F16:
      return SafetensorsDtype::F16;
    case ENG_F64:
      return SafetensorsDtype::F64;
    case ENG_I32:
      return SafetensorsDtype::I32;
    case ENG_I64:
      return SafetensorsDtype::I64;
    case ENG_U8:
      return SafetensorsDtype::U8;
    case ENG_I8:
      return SafetensorsDtype::I8;
    case ENG_BOOL:
      return SafetensorsDtype::BOOL;
    default:
      fail("eng_dtype {} has no safetensors equivalent (known: F32, BF16, F16, F64, I32, I64, U8, I8, BOOL)",
           dtype);
  }
}

std::string_view dtype_names_list() noexcept {
  return "BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64";
}

}  // namespace engine::io
