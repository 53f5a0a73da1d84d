// MappedFile: a whole file mapped read-only into memory (POSIX mmap), unmapped when destroyed.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace engine::io {

class MappedFile {
 public:
  // Maps `path` read-only. engine::Error (ENG_ERR_IO) naming the file and the system error when it cannot be
  // opened, is not a regular file, or cannot be mapped. An empty file maps to an empty span.
  static MappedFile open(const std::filesystem::path& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  size_t size() const noexcept { return size_; }

 private:
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace engine::io
