// The tokenized-dataset cache: one binary file per (tokenizer file, data file, tokenization options),
// named by a 128-bit hash of their contents, so a second run with the same inputs skips tokenization and a
// changed input gets a new file. A file that is truncated, has another key or fails its checksum is reported
// and ignored (the caller rebuilds it); it is never trusted.
//
// Layout (little-endian): "ENGTOKC" 0x01 | key (2 x u64) | n samples (u64) | skipped records (u64) |
// total tokens (u64) | lengths (n x u32) | ids (total x i32) | labels (total x i32) | FNV-1a-64 of all
// before.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/data/tokenized_sample.hpp"

namespace engine::data {

struct CacheKey {
  uint64_t a = 0, b = 0;
  std::string hex() const;
  bool operator==(const CacheKey&) const = default;
};

// Hash of both files' bytes and the options text (anything that changes the tokenized samples).
CacheKey make_cache_key(const std::filesystem::path& tokenizer_file, const std::filesystem::path& data_file,
                        std::string_view options_text);

struct CachedSamples {
  std::vector<TokenizedSample> samples;
  uint64_t skipped = 0;  // records the reader skipped when the cache was built
};

// nullopt when the file is absent, or (logged as a warning) stale or corrupt.
std::optional<CachedSamples> read_cache(const std::filesystem::path& file, const CacheKey& key);

// Writes atomically (a temporary file of this process, then rename), so ranks building it at once are safe.
void write_cache(const std::filesystem::path& file, const CacheKey& key,
                 std::span<const TokenizedSample> samples, uint64_t skipped);

}  // namespace engine::data
