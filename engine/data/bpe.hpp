// The "BPE" model of a tokenizer.json: a vocabulary and merges applied by rank (lowest first, leftmost on
// ties), exactly as HF tokenizers does. In byte-level mode (the pre-tokenizer has ByteLevel) a word is raw
// bytes and starts as one symbol per byte; otherwise it starts as one symbol per UTF-8 character, with
// byte_fallback (<0xXX> tokens) or the unknown token for characters outside the vocabulary.
// Results for short words are kept in a bounded, lock-free cache: encode_word may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace engine::data {

// The largest token id a tokenizer.json may use (vocabulary and added tokens): 2^24 - 1, far above any
// published vocabulary (~262k) and small enough that the per-id tables stay a few hundred MB at most.
inline constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// The id of a token read from tokenizer.json: an integer in 0..kMaxTokenId, else engine::Error naming the
// token (`what`) and the file (`where`).
int32_t read_token_id(const nlohmann::json& id, const std::string& what, const std::string& where);

class BpeModel {
 public:
  BpeModel();
  ~BpeModel();
  BpeModel(BpeModel&&) noexcept;
  BpeModel& operator=(BpeModel&&) noexcept;

  // Builds the model from tokenizer.json's "model" object (type "BPE"); `where` names the file in errors.
  static BpeModel from_json(const nlohmann::json& model, bool byte_level, const std::string& where);

  // Appends the ids of one word (raw bytes in byte-level mode, UTF-8 text otherwise).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The vocabulary string of `id` ("" for an id the vocabulary does not have).
  const std::string& id_to_token(int32_t id) const;
  bool byte_fallback() const noexcept { return byte_fallback_; }
  // One more than the largest id in the vocabulary.
  size_t vocab_size() const noexcept { return tokens_.size(); }

 private:
  struct PairTable;
  struct WordCache;

  void merge(std::vector<int32_t>& symbols) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> tokens_;
  std::unique_ptr<PairTable> merges_;
  std::unique_ptr<WordCache> cache_;
  std::vector<int32_t> byte_ids_;                       // byte-level: id of each single byte, -1 if absent
  std::unordered_map<std::string, int32_t> raw_vocab_;  // byte-level + ignore_merges: raw bytes -> id
  std::optional<int32_t> unk_;
  bool byte_level_ = false;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
};

}  // namespace engine::data
