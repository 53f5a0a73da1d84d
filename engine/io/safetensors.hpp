// SafetensorsFile: a read-only, memory-mapped .safetensors file whose header has been validated exactly as
// the reference implementation (the Rust `safetensors` crate) validates it, plus a few stricter checks.
//
// File layout:
//   [0, 8)           N, the header length, u64 little-endian (at most 100,000,000, like the reference)
//   [8, 8 + N)       header: a UTF-8 JSON object starting with '{' (may end with spaces: writers pad N to 8)
//   [8 + N, size)    data buffer; tensor i occupies data_offsets [begin, end) relative to its start
// Header entries: "__metadata__" (optional) is a string -> string map; every other key is a tensor name
// mapped to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, nothing else.
// Validation (each failure is an engine::Error naming the file, the tensor, what is wrong and, where it
// helps, how to fix it; never a crash, whatever the bytes): sorted by offsets, the tensors tile the data
// buffer exactly (the first begins at 0, each begins where the previous ended, the last ends at the end of
// the file: no gap, overlap or trailing bytes), and product(shape) * dtype size == end - begin, computed
// without overflow. Stricter than the reference: unknown keys in a tensor entry, duplicate keys, and
// non-string metadata values are refused.
//
// Tensor data is not aligned in general (only to the file's own padding): read it with memcpy or by bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/abi/engine.h"
#include "engine/io/safetensors_dtype.hpp"

namespace engine::io {

// The largest header the format allows (the reference implementation's MAX_HEADER_SIZE).
inline constexpr uint64_t kSafetensorsMaxHeaderSize = 100'000'000;

// One tensor of a file: views into the file's memory, valid while its SafetensorsFile lives.
struct SafetensorsTensor {
  std::string_view name;
  SafetensorsDtype dtype;
  std::string_view dtype_name;            // "F32", "BF16", ... as in the header
  std::optional<eng_dtype> engine_dtype;  // where the engine has the type (see to_eng_dtype)
  std::span<const int64_t> shape;         // empty for a 0-d tensor
  const std::byte* data;                  // nbytes bytes, read-only, possibly unaligned
  size_t nbytes;

  // Number of elements (1 for a 0-d tensor, 0 when a dimension is 0).
  int64_t numel() const noexcept;
};

class SafetensorsFile {
 public:
  // Maps and validates the file. engine::Error (ENG_ERR_IO when it cannot be read, ENG_ERR_INVALID_ARGUMENT
  // when it is not a valid safetensors file).
  static SafetensorsFile open(const std::filesystem::path& path);

  // Validates bytes already in memory (kept by the object); `label` names them in error messages.
  static SafetensorsFile from_bytes(std::vector<std::byte> bytes, std::string label);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  // The path given to open() (or the label given to from_bytes()).
  const std::string& path() const noexcept;

  // Tensor names in file order (by data offset).
  std::vector<std::string_view> names() const;
  size_t size() const noexcept;

  // The tensor called `name`, or nullopt.
  std::optional<SafetensorsTensor> find(std::string_view name) const;

  // The tensor called `name`; engine::Error (ENG_ERR_NOT_FOUND) naming the file and the closest names.
  SafetensorsTensor tensor(std::string_view name) const;

  // All tensors in file order.
  std::vector<SafetensorsTensor> tensors() const;

  // The "__metadata__" map (empty when absent).
  const std::map<std::string, std::string>& metadata() const noexcept;

  // Bytes of the header (N) and of the data buffer.
  size_t header_size() const noexcept;
  size_t data_size() const noexcept;

 private:
  struct State;
  explicit SafetensorsFile(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace engine::io
