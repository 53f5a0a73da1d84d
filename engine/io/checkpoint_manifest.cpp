#include "engine/io/checkpoint_manifest.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/io/atomic_file.hpp"

namespace engine::io {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "engine-checkpoint-manifest";

struct FileDigest {
  std::string sha256;
  uint64_t bytes = 0;
};

FileDigest digest_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_with(ENG_ERR_IO, "cannot read {}: {}", path.string(), std::strerror(errno));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    ::close(fd);
    fail_with(ENG_ERR_IO, "cannot start a SHA-256 digest (OpenSSL) for {}", path.string());
  }
  std::vector<unsigned char> buffer(1 << 20);
  FileDigest out;
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      fail_with(ENG_ERR_IO, "cannot read {}: {}", path.string(), std::strerror(err));
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<size_t>(n));
    out.bytes += static_cast<uint64_t>(n);
  }
  ::close(fd);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned int i = 0; i < len; ++i) {
    out.sha256.push_back(kHex[md[i] >> 4]);
    out.sha256.push_back(kHex[md[i] & 15]);
  }
  return out;
}

[[noreturn]] void bad_manifest(const fs::path& file, const std::string& what) {
  fail_with(ENG_ERR_IO,
            "{}: {}; the checkpoint cannot be verified. Resume from another checkpoint (--resume DIR) or "
            "start over (--resume none)",
            file.string(), what);
}

}  // namespace

std::string sha256_file(const fs::path& path) { return digest_file(path).sha256; }

void write_checkpoint_manifest(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const fs::path rel = entry.path().lexically_relative(dir);
    if (rel == kCheckpointManifest) continue;
    files.push_back(rel);
  }
  std::sort(files.begin(), files.end());
  nlohmann::json listed = nlohmann::json::object();
  for (const fs::path& rel : files) {
    const FileDigest d = digest_file(dir / rel);
    listed[rel.generic_string()] = {{"bytes", d.bytes}, {"sha256", d.sha256}};
  }
  const nlohmann::json manifest = {
      {"format", kFormat}, {"version", 1}, {"algorithm", "sha256"}, {"files", listed}};
  write_file_atomic(dir / kCheckpointManifest, manifest.dump(2) + "\n");
}

void verify_checkpoint_manifest(const fs::path& dir, const ManifestCheck& check) {
  const fs::path file = dir / kCheckpointManifest;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    bad_manifest(file,
                 "no such file (every checkpoint this engine writes has one, written last: the directory was "
                 "damaged or not written by this engine)");
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json manifest = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  // json::value() throws when the key holds another type ({"format": {...}}, found by the checkpoint_state
  // fuzzer): a field of the wrong type is a malformed manifest like a missing one.
  auto text_field = [&](const char* key) {
    return manifest.contains(key) && manifest[key].is_string() ? manifest[key].get<std::string>() : std::string();
  };
  if (!manifest.is_object() || text_field("format") != kFormat || text_field("algorithm") != "sha256" ||
      !manifest.contains("files") || !manifest["files"].is_object()) {
    bad_manifest(file, "not a checkpoint manifest (format engine-checkpoint-manifest, algorithm sha256)");
  }
  for (const auto& [name, entry] : manifest["files"].items()) {
    const fs::path rel(name);
    if (rel.is_absolute() || name.find("..") != std::string::npos || !entry.is_object() ||
        !entry.contains("sha256") || !entry["sha256"].is_string() || !entry.contains("bytes") ||
        !entry["bytes"].is_number_unsigned()) {
      bad_manifest(file, "malformed entry \"" + name + "\"");
    }
    const fs::path path = dir / rel;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      if (check.may_be_missing.count(name) != 0) continue;
      fail_with(ENG_ERR_IO,
                "checkpoint {} is incomplete: {} is missing (manifest.json lists it). Resume from another "
                "checkpoint (--resume DIR) or start over (--resume none)",
                dir.string(), name);
    }
    const FileDigest d = digest_file(path);
    const uint64_t bytes = entry["bytes"].get<uint64_t>();
    if (d.bytes != bytes || d.sha256 != entry["sha256"].get<std::string>()) {
      fail_with(ENG_ERR_IO,
                "checkpoint {} is damaged: {} does not match manifest.json ({}; the file changed after it was "
                "written, e.g. a disk or copy error). Resume from another checkpoint (--resume DIR) or start "
                "over (--resume none)",
                dir.string(), name,
                d.bytes != bytes ? fmt::format("{} bytes, expected {}", d.bytes, bytes)
                                 : "SHA-256 " + d.sha256 + ", expected " + entry["sha256"].get<std::string>());
    }
  }
}

}  // namespace engine::io
