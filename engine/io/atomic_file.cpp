#include "engine/io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "engine/core/error.hpp"

namespace engine::io {
namespace {

[[noreturn]] void fail_errno(int err, std::string_view what, const std::filesystem::path& path) {
  const char* hint = err == ENOSPC ? " (the disk is full: free space or choose another output directory)"
                     : err == EACCES || err == EPERM ? " (check the permissions of the directory)"
                                                     : "";
  fail_with(ENG_ERR_IO, "cannot {} {}: {}{}", what, path.string(), std::strerror(err), hint);
}

void fsync_fd(int fd, const std::filesystem::path& path) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) fail_errno(errno, "fsync", path);
  }
}

std::filesystem::path parent_of(const std::filesystem::path& path) {
  std::filesystem::path parent = path.parent_path();
  return parent.empty() ? std::filesystem::path(".") : parent;
}

// fsync every regular file and directory below `dir`, children before their directory.
void fsync_tree(const std::filesystem::path& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_directory()) {
      fsync_tree(entry.path());
    } else if (entry.is_regular_file()) {
      const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) fail_errno(errno, "open for fsync", entry.path());
      try {
        fsync_fd(fd, entry.path());
      } catch (...) {
        ::close(fd);
        throw;
      }
      ::close(fd);
    }
  }
  if (ec) fail_with(ENG_ERR_IO, "cannot list {}: {}", dir.string(), ec.message());
  fsync_directory(dir);
}

}  // namespace

void fsync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail_errno(errno, "open directory", dir);
  while (::fsync(fd) != 0) {
    if (errno == EINTR) continue;
    // Some file systems cannot fsync a directory; that is not a failure of the write itself.
    if (errno == EINVAL || errno == ENOTSUP) break;
    const int err = errno;
    ::close(fd);
    fail_errno(err, "fsync directory", dir);
  }
  ::close(fd);
}

AtomicFileWriter::AtomicFileWriter(std::filesystem::path path) : path_(std::move(path)) {
  if (path_.filename().empty()) fail("cannot write {}: the path names no file", path_.string());
  std::string pattern = path_.string() + ".tmp-XXXXXX";
  fd_ = ::mkostemp(pattern.data(), O_CLOEXEC);
  if (fd_ < 0) fail_errno(errno, "create a temporary file beside", path_);
  temp_path_ = pattern;
  ::fchmod(fd_, 0644);  // mkstemp makes 0600; published files are readable like any other output
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

void AtomicFileWriter::write(std::span<const std::byte> bytes) {
  if (fd_ < 0) fail("cannot write {}: the file was already committed", path_.string());
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(errno, "write", temp_path_);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void AtomicFileWriter::write(std::string_view text) {
  write(std::span<const std::byte>(reinterpret_cast<const std::byte*>(text.data()), text.size()));
}

void AtomicFileWriter::commit() {
  if (fd_ < 0) fail("cannot commit {}: it was already committed", path_.string());
  fsync_fd(fd_, temp_path_);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail_errno(errno, "close", temp_path_);
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
    fail_errno(errno, "rename the temporary file onto", path_);
  committed_ = true;
  fsync_directory(parent_of(path_));
}

void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  AtomicFileWriter writer(path);
  writer.write(bytes);
  writer.commit();
}

void write_file_atomic(const std::filesystem::path& path, std::string_view text) {
  AtomicFileWriter writer(path);
  writer.write(text);
  writer.commit();
}

AtomicDirectory::AtomicDirectory(std::filesystem::path final_path) : final_path_(std::move(final_path)) {
  while (!final_path_.empty() && final_path_.filename().empty())
    final_path_ = final_path_.parent_path();  // "a/"
  if (final_path_.empty()) fail("cannot publish a directory with an empty path");
  std::error_code ec;
  std::filesystem::create_directories(parent_of(final_path_), ec);
  if (ec) fail_with(ENG_ERR_IO, "cannot create {}: {}", parent_of(final_path_).string(), ec.message());
  std::string pattern = final_path_.string() + ".tmp-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    fail_errno(errno, "create a staging directory beside", final_path_);
  staging_path_ = pattern;
  ::chmod(staging_path_.c_str(), 0755);  // mkdtemp makes 0700
}

AtomicDirectory::~AtomicDirectory() {
  if (!committed_ && !staging_path_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(staging_path_, ec);  // best effort: a destructor must not throw
  }
}

void AtomicDirectory::commit() {
  if (committed_) fail("cannot commit {}: it was already committed", final_path_.string());
  if (std::filesystem::exists(std::filesystem::symlink_status(final_path_))) {
    fail_with(ENG_ERR_IO, "cannot publish {}: it already exists (remove it or choose another name)",
              final_path_.string());
  }
  fsync_tree(staging_path_);
  if (::rename(staging_path_.c_str(), final_path_.c_str()) != 0) {
    fail_errno(errno, "rename the staging directory onto", final_path_);
  }
  committed_ = true;
  fsync_directory(parent_of(final_path_));
}

}  // namespace engine::io
