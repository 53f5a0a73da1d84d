// Crash-safe publishing of files and directories: write under a temporary name in the same directory,
// fsync the data, rename(2) onto the final name, fsync the parent directory. A reader sees either the old
// state or the complete new one, never a partial file, even across a power loss.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string_view>

namespace engine::io {

// fsync a directory, making renames and creations in it durable. engine::Error (ENG_ERR_IO) on failure.
void fsync_directory(const std::filesystem::path& dir);

// Writes one file atomically: the data goes to `<path>.tmp-XXXXXX`; commit() makes it `path` (replacing
// an existing file). Destroyed without commit(), the temporary file is removed and `path` is untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path path);
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  // Appends bytes (retrying short writes). engine::Error (ENG_ERR_IO) naming the file on failure.
  void write(std::span<const std::byte> bytes);
  void write(std::string_view text);

  // fsync the file, close it, rename it to the final path, fsync the directory. Once only.
  void commit();

  const std::filesystem::path& path() const noexcept { return path_; }
  const std::filesystem::path& temp_path() const noexcept { return temp_path_; }

 private:
  std::filesystem::path path_;
  std::filesystem::path temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// One-shot forms of AtomicFileWriter.
void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes);
void write_file_atomic(const std::filesystem::path& path, std::string_view text);

// Publishes a directory atomically (checkpoints): fill path() (`<final>.tmp-XXXXXX`, created beside the
// final directory, parents created as needed); commit() fsyncs every file and directory inside, renames it
// to the final name and fsyncs the parent. The final directory must not exist yet (engine::Error
// otherwise, before anything is renamed). Destroyed without commit(), the staging directory is removed.
class AtomicDirectory {
 public:
  explicit AtomicDirectory(std::filesystem::path final_path);
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;
  ~AtomicDirectory();

  const std::filesystem::path& path() const noexcept { return staging_path_; }
  const std::filesystem::path& final_path() const noexcept { return final_path_; }

  void commit();

 private:
  std::filesystem::path final_path_;
  std::filesystem::path staging_path_;
  bool committed_ = false;
};

}  // namespace engine::io
