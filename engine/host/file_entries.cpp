// The host table's file entry: a plugin's text or JSON file (adapter_config.json, a quantizer's metadata)
// written atomically by the engine's AtomicFileWriter, so that a crash never leaves half a file.
#include <filesystem>
#include <span>

#include "engine/core/error.hpp"
#include "engine/host/entry_guard.hpp"
#include "engine/host/host_entries.hpp"
#include "engine/io/atomic_file.hpp"

namespace engine::host {

eng_status h_file_write(const eng_ctx* ctx, const char* path, const void* data, size_t bytes) {
  return guarded(ctx, "file_write", [&] {
    if (path == nullptr || *path == '\0') fail("the path is NULL or empty; pass the file to write");
    if (data == nullptr && bytes != 0) fail("data is NULL but bytes is {}", bytes);
    const std::filesystem::path p(path);
    const std::filesystem::path folder = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
    if (!std::filesystem::is_directory(folder))
      fail_with(ENG_ERR_IO, "cannot write {}: the folder {} does not exist; create it first", path, folder.string());
    io::AtomicFileWriter w(p);
    w.write(std::span<const std::byte>(static_cast<const std::byte*>(data), bytes));
    w.commit();
  });
}

}  // namespace engine::host
