// SafetensorsWriter: collects tensors and metadata and writes a .safetensors file byte-identical to what
// the Python `safetensors` package (Rust crate `safetensors`) writes for the same tensors:
//   - tensors ordered by dtype, descending in the reference's dtype order (U64, I64, F64, F32, U32, I32,
//     BF16, F16, U16, I16, F8_E4M3, F8_E5M2, I8, U8, BOOL), then by name (bytewise);
//   - data laid out in that order with no padding between tensors;
//   - header = compact JSON (serde_json style: no spaces, only '"', '\' and control characters escaped),
//     "__metadata__" first when there is metadata, each tensor as {"dtype","shape","data_offsets"},
//     padded with spaces to a multiple of 8 bytes.
// One difference: the reference keeps metadata in a hash map, so with two or more metadata entries the
// Python package writes them in an arbitrary order (it varies between runs); this writer sorts them by key.
// With zero or one metadata entry the bytes are identical.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "engine/abi/engine.h"
#include "engine/io/safetensors_dtype.hpp"

namespace engine::io {

class SafetensorsWriter {
 public:
  // Adds a tensor, copying its bytes. data.size() must equal product(shape) * dtype size; the name must be
  // new, valid UTF-8 and not "__metadata__"; dimensions must be >= 0 (engine::Error otherwise).
  void add(std::string name, SafetensorsDtype dtype, std::vector<int64_t> shape,
           std::span<const std::byte> data);
  void add(std::string name, eng_dtype dtype, std::vector<int64_t> shape, std::span<const std::byte> data);

  // Same without a copy: `data` must stay valid and unchanged until the last write()/serialize() call.
  void add_borrowed(std::string name, SafetensorsDtype dtype, std::vector<int64_t> shape,
                    std::span<const std::byte> data);

  // A tensor whose bytes are not held here: write(path, produce) asks for them when the file reaches it, so a
  // file far larger than memory (a shard of a 7B model) is written tensor by tensor. serialize() and
  // write(path) refuse a writer that has streamed tensors.
  void add_streamed(std::string name, SafetensorsDtype dtype, std::vector<int64_t> shape);

  // Sets a "__metadata__" entry (UTF-8 key and value).
  void set_metadata(std::string key, std::string value);

  size_t size() const noexcept { return tensors_.size(); }

  // The header as it will be written: JSON padded with spaces to a multiple of 8 bytes.
  std::string header() const;

  // The whole file in memory: 8-byte little-endian header length, header, data.
  std::vector<std::byte> serialize() const;

  // Writes the file atomically (temporary file in the same directory, fsync, rename, fsync directory).
  void write(const std::filesystem::path& path) const;

  // Appends bytes of the tensor being produced to the file.
  using ByteSink = std::function<void(std::span<const std::byte>)>;
  // Same, producing the bytes of streamed tensors in file order: produce(name, sink) must pass exactly the
  // tensor's size in bytes to sink (in as many pieces as it likes); engine::Error otherwise, and the
  // destination is left untouched.
  void write(const std::filesystem::path& path,
             const std::function<void(const std::string& name, const ByteSink& sink)>& produce) const;

  // Names of the tensors in the order their data lies in the file.
  std::vector<std::string> file_order() const;

 private:
  struct Pending {
    std::string name;
    SafetensorsDtype dtype{};
    std::vector<int64_t> shape;
    std::vector<std::byte> owned;     // empty when borrowed
    std::span<const std::byte> data;  // owned or the caller's; empty when streamed
    uint64_t nbytes = 0;
    bool streamed = false;
  };
  void add_pending(Pending pending);
  std::vector<const Pending*> ordered() const;

  std::vector<Pending> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace engine::io
