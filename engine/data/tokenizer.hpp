// Tokenizer: a Hugging Face tokenizer.json with a BPE model, as used by Qwen2/2.5/3 and Llama 3 (byte-level
// BPE), and Llama 2-style SentencePiece BPE (Prepend/Replace normalizers or Metaspace, byte fallback).
// Encoding runs: added/special tokens matched first (added_tokens.hpp), the normalizer on the text between
// them (normalizer.hpp), the pre-tokenizer (pre_tokenizer.hpp), BPE merges by rank (bpe.hpp), then the
// post-processor when add_special_tokens is set (TemplateProcessing, ByteLevel). Decoding applies the decoder
// (decoder.hpp). Ids are identical to the Python `tokenizers` package (tests/unit/data/tokenizer_test).
// Unsupported component types are refused by name when the file is loaded. The file's "truncation" and
// "padding" sections are ignored: the data pipeline truncates and pads itself (packing.hpp).
// A Tokenizer is immutable after loading; encode/decode may be called from many threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace engine::data {

// Ids plus, for each id, the byte offset in the input text where the token starts.
struct Encoding {
  std::vector<int32_t> ids;
  std::vector<uint32_t> starts;
};

class Tokenizer {
 public:
  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Loads `path`: a tokenizer.json, or a model directory that contains one.
  static Tokenizer from_file(const std::filesystem::path& path);
  // Parses tokenizer.json text; `where` names it in error messages.
  static Tokenizer from_json_text(std::string_view json, const std::string& where);

  // Ids of UTF-8 `text` (throws engine::Error on invalid UTF-8, naming the byte offset).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Same, plus the byte offset in `text` where each token starts (special tokens added by the
  // post-processor get 0 before the text and text.size() after it).
  Encoding encode_with_offsets(std::string_view text, bool add_special_tokens = false) const;
  // Text of `ids` (invalid UTF-8 from partial byte sequences becomes U+FFFD, as in HF).
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // Id of a token string (added tokens first, then the vocabulary).
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Token string of an id ("" when the id is unknown).
  std::string id_to_token(int32_t id) const;
  // True when `id` is an added token marked special (<|im_end|>, <|eot_id|>, ...).
  bool is_special(int32_t id) const;
  // One more than the largest id (vocabulary and added tokens).
  size_t vocab_size() const;
  // The file it was loaded from (or the `where` given).
  const std::string& source() const;

 private:
  struct Impl;
  void encode_into(std::string_view text, bool add_special_tokens, Encoding& out, bool offsets) const;
  std::unique_ptr<Impl> impl_;
};

}  // namespace engine::data
