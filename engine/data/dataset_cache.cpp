#include "engine/data/dataset_cache.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "engine/core/error.hpp"

namespace engine::data {
namespace {

constexpr char kMagic[8] = {'E', 'N', 'G', 'T', 'O', 'K', 'C', 1};

uint64_t fnv1a(std::string_view bytes, uint64_t h = 0xCBF29CE484222325ull) {
  for (char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

// A second, independent 64-bit hash (8 bytes at a time, murmur-style finaliser) for a 128-bit key.
uint64_t mix_hash(std::string_view bytes, uint64_t h) {
  const auto fmix = [](uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    k *= 0xC4CEB9FE1A85EC53ull;
    return k ^ (k >> 33);
  };
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ fmix(w)) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
  h = fmix(h ^ fmix(tail ^ (bytes.size() << 3)));
  return h;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_with(ENG_ERR_IO, "cannot read {}", path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

template <typename T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

struct Reader {
  std::string_view data;
  size_t pos = 0;
  template <typename T>
  bool get(T& v) {
    if (data.size() - pos < sizeof(T)) return false;
    std::memcpy(&v, data.data() + pos, sizeof(T));
    pos += sizeof(T);
    return true;
  }
};

}  // namespace

std::string CacheKey::hex() const { return fmt::format("{:016x}{:016x}", a, b); }

CacheKey make_cache_key(const std::filesystem::path& tokenizer_file, const std::filesystem::path& data_file,
                        std::string_view options_text) {
  std::filesystem::path tok = tokenizer_file;
  if (std::filesystem::is_directory(tok)) tok /= "tokenizer.json";
  CacheKey key{0xCBF29CE484222325ull, 0x2545F4914F6CDD1Dull};
  for (const std::string& part : {read_file(tok), read_file(data_file), std::string(options_text)}) {
    // Length-prefixed so that moving bytes between parts changes the key.
    const std::string length = std::to_string(part.size()) + ":";
    key.a = fnv1a(part, fnv1a(length, key.a));
    key.b = mix_hash(part, mix_hash(length, key.b));
  }
  return key;
}

std::optional<CachedSamples> read_cache(const std::filesystem::path& file, const CacheKey& key) {
  if (!std::filesystem::exists(file)) return std::nullopt;
  std::string bytes;
  try {
    bytes = read_file(file);
  } catch (const Error& e) {
    spdlog::warn("tokenized-data cache {} unreadable ({}); rebuilding it", file.string(), e.what());
    return std::nullopt;
  }
  const auto reject = [&](const char* why) -> std::optional<CachedSamples> {
    spdlog::warn("tokenized-data cache {} is {}; rebuilding it", file.string(), why);
    return std::nullopt;
  };
  if (bytes.size() < sizeof(kMagic) + 8 || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return reject("not a cache file of this version");
  }
  uint64_t stored_sum = 0;
  std::memcpy(&stored_sum, bytes.data() + bytes.size() - 8, 8);
  if (fnv1a(std::string_view(bytes).substr(0, bytes.size() - 8)) != stored_sum)
    return reject("corrupt (checksum)");
  Reader r{std::string_view(bytes).substr(0, bytes.size() - 8), sizeof(kMagic)};
  CacheKey stored;
  uint64_t n = 0, skipped = 0, total = 0;
  if (!r.get(stored.a) || !r.get(stored.b) || !r.get(n) || !r.get(skipped) || !r.get(total))
    return reject("truncated");
  if (!(stored == key)) return reject("for other inputs (key mismatch)");
  if (r.data.size() - r.pos != n * 4 + total * 8) return reject("truncated");
  CachedSamples out;
  out.skipped = skipped;
  out.samples.resize(n);
  uint64_t sum = 0;
  for (auto& s : out.samples) {
    uint32_t length = 0;
    r.get(length);
    s.ids.resize(length);
    s.labels.resize(length);
    sum += length;
  }
  if (sum != total) return reject("inconsistent (lengths)");
  for (auto& s : out.samples) {
    std::memcpy(s.ids.data(), r.data.data() + r.pos, s.ids.size() * 4);
    r.pos += s.ids.size() * 4;
  }
  for (auto& s : out.samples) {
    std::memcpy(s.labels.data(), r.data.data() + r.pos, s.labels.size() * 4);
    r.pos += s.labels.size() * 4;
  }
  return out;
}

void write_cache(const std::filesystem::path& file, const CacheKey& key,
                 std::span<const TokenizedSample> samples, uint64_t skipped) {
  std::string out(kMagic, sizeof(kMagic));
  uint64_t total = 0;
  for (const auto& s : samples) total += s.ids.size();
  put(out, key.a);
  put(out, key.b);
  put(out, static_cast<uint64_t>(samples.size()));
  put(out, skipped);
  put(out, total);
  for (const auto& s : samples) put(out, static_cast<uint32_t>(s.ids.size()));
  for (const auto& s : samples) out.append(reinterpret_cast<const char*>(s.ids.data()), s.ids.size() * 4);
  for (const auto& s : samples)
    out.append(reinterpret_cast<const char*>(s.labels.data()), s.labels.size() * 4);
  put(out, fnv1a(out));
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  // A temporary name of this process and thread: ranks that build the same cache at once never share one;
  // the last rename wins, and every renamed file is complete.
  const std::filesystem::path tmp = fmt::format("{}.tmp.{}.{:x}", file.string(), ::getpid(),
                                                std::hash<std::thread::id>{}(std::this_thread::get_id()));
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail_with(ENG_ERR_IO, "cannot write tokenized-data cache {}", tmp.string());
    f.write(out.data(), static_cast<std::streamsize>(out.size()));
    if (!f) fail_with(ENG_ERR_IO, "writing tokenized-data cache {} failed (disk full?)", tmp.string());
  }
  std::error_code error;
  std::filesystem::rename(tmp, file, error);
  if (error) {
    std::filesystem::remove(tmp, error);
    spdlog::warn("could not install tokenized-data cache {}: {}", file.string(), error.message());
  }
}

}  // namespace engine::data
