// manifest.json of a checkpoint (engine/io/checkpoint_manifest.cpp): written over every file, it verifies an
// untouched directory and names the file after one flipped bit, a truncation or a deletion.
#include "engine/io/checkpoint_manifest.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "engine/core/error.hpp"

namespace engine::io {
namespace {

namespace fs = std::filesystem;

void write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

std::string error_of(const fs::path& dir, const ManifestCheck& check = {}) {
  try {
    verify_checkpoint_manifest(dir, check);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class ManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("manifest-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "sub");
    write(dir_ / "adapter_model.safetensors", std::string(1000, 'a'));
    write(dir_ / "optimizer.safetensors", "optimizer state");
    write(dir_ / "sub" / "nested.json", "{}");
    write_checkpoint_manifest(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(ManifestTest, KnownDigestAndUntouchedDirectoryVerifies) {
  write(dir_ / "digits", "0123456789");
  EXPECT_EQ(sha256_file(dir_ / "digits"), "84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882");
  EXPECT_EQ(error_of(dir_), "");  // files the manifest does not list are not its concern
}

TEST_F(ManifestTest, OneFlippedBitIsNamed) {
  std::string bytes(1000, 'a');
  bytes[500] ^= 0x01;
  write(dir_ / "adapter_model.safetensors", bytes);
  const std::string e = error_of(dir_);
  EXPECT_NE(e.find("adapter_model.safetensors does not match manifest.json"), std::string::npos) << e;
  EXPECT_NE(e.find("SHA-256"), std::string::npos) << e;
}

TEST_F(ManifestTest, TruncationAndDeletionAreNamed) {
  write(dir_ / "sub" / "nested.json", "{");
  EXPECT_NE(error_of(dir_).find("sub/nested.json does not match manifest.json (1 bytes, expected 2;"),
            std::string::npos);
  write(dir_ / "sub" / "nested.json", "{}");
  fs::remove(dir_ / "optimizer.safetensors");
  EXPECT_NE(error_of(dir_).find("optimizer.safetensors is missing"), std::string::npos);
  ManifestCheck allow;
  allow.may_be_missing.insert("optimizer.safetensors");
  EXPECT_EQ(error_of(dir_, allow), "");
}

TEST_F(ManifestTest, MissingOrMalformedManifestIsRefused) {
  write(dir_ / kCheckpointManifest, R"({"format": "engine-checkpoint-manifest", "algorithm": "sha256",
    "files": {"../etc/passwd": {"bytes": 1, "sha256": "00"}}})");
  EXPECT_NE(error_of(dir_).find("malformed entry"), std::string::npos);
  write(dir_ / kCheckpointManifest, "not json");
  EXPECT_NE(error_of(dir_).find("not a checkpoint manifest"), std::string::npos);
  // fields of the wrong type (found by the checkpoint_state fuzzer: json::value threw type_error 302)
  for (const char* text : {R"({"format": {"adapter_model.safetensors": {"bytes": 10}}})",
                           R"({"format": "engine-checkpoint-manifest", "algorithm": 7, "files": {}})"}) {
    write(dir_ / kCheckpointManifest, text);
    EXPECT_NE(error_of(dir_).find("not a checkpoint manifest"), std::string::npos) << text;
  }
  fs::remove(dir_ / kCheckpointManifest);
  EXPECT_NE(error_of(dir_).find("manifest.json: no such file"), std::string::npos);
}

}  // namespace
}  // namespace engine::io
