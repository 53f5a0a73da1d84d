// The element types a safetensors file can name, their byte sizes, and their mapping to eng_dtype.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "engine/abi/engine.h"

namespace engine::io {

// Declared in the order of the reference implementation's Rust enum: its writer sorts tensors by this
// order, descending (then by name), so SafetensorsWriter relies on it to reproduce the same bytes.
enum class SafetensorsDtype : uint8_t {
  BOOL,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64,
};

// "F32", "BF16", ... exactly as written in a header.
std::string_view dtype_name(SafetensorsDtype dtype) noexcept;

// Bytes per element (1 for BOOL and the F8 types).
size_t dtype_size(SafetensorsDtype dtype) noexcept;

// The dtype a header string names, or nullopt for anything else (names are case-sensitive).
std::optional<SafetensorsDtype> parse_dtype(std::string_view name) noexcept;

// The engine dtype for it, where the engine has one (F8, I16 and the unsigned wider types have none).
std::optional<eng_dtype> to_eng_dtype(SafetensorsDtype dtype) noexcept;

// The safetensors dtype for an engine dtype; engine::Error for a value eng_dtype does not define.
SafetensorsDtype from_eng_dtype(eng_dtype dtype);

// The list of dtype names, for error messages: "BOOL, U8, I8, ...".
std::string_view dtype_names_list() noexcept;

}  // namespace engine::io
