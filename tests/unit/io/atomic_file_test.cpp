// engine/io/atomic_file.cpp: files and directories appear complete or not at all, temporaries never stay.
#include "engine/io/atomic_file.hpp"

#include <gtest/gtest.h>

#include "engine/core/error.hpp"
#include "tests/unit/io/test_files.hpp"

namespace engine::io {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

TEST(AtomicFile, WritesAndReplacesWithoutLeavingTemporaries) {
  TempDir dir;
  write_file_atomic(dir / "a.txt", std::string_view("first"));
  EXPECT_EQ(testing::read_text(dir / "a.txt"), "first");
  write_file_atomic(dir / "a.txt", std::string_view("second, longer"));
  EXPECT_EQ(testing::read_text(dir / "a.txt"), "second, longer");
  EXPECT_EQ(testing::file_names(dir.path()), std::vector<std::string>{"a.txt"});
  const auto perms = fs::status(dir / "a.txt").permissions();
  EXPECT_NE(perms & fs::perms::others_read, fs::perms::none);  // not mkstemp's 0600
}

TEST(AtomicFile, UncommittedWriterLeavesNothing) {
  TempDir dir;
  write_file_atomic(dir / "keep.txt", std::string_view("old"));
  {
    AtomicFileWriter w(dir / "keep.txt");
    w.write(std::string_view("new but abandoned"));
    EXPECT_TRUE(fs::exists(w.temp_path()));
    EXPECT_EQ(w.temp_path().parent_path(), dir.path());  // same directory, so rename is atomic
  }
  EXPECT_EQ(testing::read_text(dir / "keep.txt"), "old");
  EXPECT_EQ(testing::file_names(dir.path()), std::vector<std::string>{"keep.txt"});
}

TEST(AtomicFile, StreamedWritesAndDoubleCommit) {
  TempDir dir;
  AtomicFileWriter w(dir / "b.bin");
  const std::vector<std::byte> part = {std::byte{1}, std::byte{2}, std::byte{3}};
  w.write(part);
  w.write(std::string_view("xy"));
  EXPECT_FALSE(fs::exists(dir / "b.bin"));  // invisible until commit
  w.commit();
  EXPECT_EQ(testing::read_text(dir / "b.bin"), std::string("\x01\x02\x03xy"));
  EXPECT_THROW(w.commit(), Error);
  EXPECT_THROW(w.write(part), Error);
}

TEST(AtomicFile, ErrorsNameThePath) {
  TempDir dir;
  try {
    write_file_atomic(dir / "no" / "such" / "file", std::string_view("x"));
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), ENG_ERR_IO);
    EXPECT_NE(std::string(e.what()).find("no/such/file"), std::string::npos) << e.what();
  }
  try {
    fsync_directory(dir / "missing");
    FAIL() << "expected engine::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(fsync_directory(dir.path()));
}

TEST(AtomicDirectory, PublishesCompleteDirectory) {
  TempDir dir;
  const fs::path final_dir = dir / "out" / "checkpoint-10";  // parents are created
  {
    AtomicDirectory staging(final_dir);
    EXPECT_EQ(staging.path().parent_path(), final_dir.parent_path());
    EXPECT_NE(staging.path().filename().string().find("checkpoint-10.tmp-"), std::string::npos);
    write_file_atomic(staging.path() / "a.json", std::string_view("{}"));
    fs::create_directories(staging.path() / "sub");
    testing::write_text(staging.path() / "sub" / "b.bin", "bytes");
    EXPECT_FALSE(fs::exists(final_dir));
    staging.commit();
    EXPECT_FALSE(fs::exists(staging.path()));
  }
  EXPECT_EQ(testing::read_text(final_dir / "a.json"), "{}");
  EXPECT_EQ(testing::read_text(final_dir / "sub" / "b.bin"), "bytes");
  EXPECT_EQ(testing::file_names(dir / "out"), std::vector<std::string>{"checkpoint-10"});
}

TEST(AtomicDirectory, AbandonedOrConflictingStagingIsRemoved) {
  TempDir dir;
  fs::path staged;
  {
    AtomicDirectory staging(dir / "ckpt");
    staged = staging.path();
    testing::write_text(staged / "x", "x");
  }
  EXPECT_FALSE(fs::exists(staged));
  EXPECT_FALSE(fs::exists(dir / "ckpt"));

  fs::create_directories(dir / "ckpt");
  {
    AtomicDirectory staging(dir / "ckpt");
    try {
      staging.commit();
      FAIL() << "expected engine::Error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(testing::file_names(dir.path()), std::vector<std::string>{"ckpt"});
}

}  // namespace
}  // namespace engine::io
