// manifest.json of a checkpoint directory: the SHA-256 and size of every file in it, written last, checked
// before a checkpoint is used (resume, export). A flipped bit, a truncated or a missing file is then an error
// naming the file, instead of a run that silently continues from wrong state.
//   {"format": "engine-checkpoint-manifest", "version": 1, "algorithm": "sha256",
//    "files": {"adapter_model.safetensors": {"bytes": 1234, "sha256": "ab12..."}, ...}}
// Paths are relative to the directory ('/'-separated); the manifest does not list itself.
#pragma once

#include <filesystem>
#include <set>
#include <string>

namespace engine::io {

inline constexpr const char* kCheckpointManifest = "manifest.json";

// The hex SHA-256 of a file's bytes. engine::Error (ENG_ERR_IO) naming the file when it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

// Writes `dir`/manifest.json (atomically) over every regular file below `dir`.
void write_checkpoint_manifest(const std::filesystem::path& dir);

struct ManifestCheck {
  std::set<std::string> may_be_missing;  // listed files whose absence is accepted (explicit user flags)
};

// Checks every file the manifest lists: present, same size, same SHA-256. engine::Error naming the
// checkpoint, the file and what differs; also when manifest.json itself is missing or malformed.
void verify_checkpoint_manifest(const std::filesystem::path& dir, const ManifestCheck& check = {});

}  // namespace engine::io
