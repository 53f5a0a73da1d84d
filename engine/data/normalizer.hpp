// The normalizer stage of a tokenizer.json: "NFC", "NFD", "NFKC", "NFKD" (ICU's Normalizer2, Unicode 15),
// "Prepend", "Replace" (String pattern) as Llama 2-style tokenizers use, and "Sequence" of those. Other types
// are refused by name when the tokenizer is loaded. Every step keeps a byte map back to the input (offsets).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace engine::data {

class Normalizer {
 public:
  // Builds the normalizer described by tokenizer.json's "normalizer" value; null gives an identity
  // normalizer. `where` names the file for error messages.
  static Normalizer from_json(const nlohmann::json& spec, const std::string& where);

  // The text rewrite of a Metaspace pre-tokenizer: spaces become `replacement`, which is also put in front
  // when `prepend` is set and the text does not start with it.
  static Normalizer metaspace(const std::string& replacement, bool prepend);

  bool is_identity() const noexcept { return steps_.empty(); }

  // Normalizes valid UTF-8 `text`. Returns false when it is already normalized (then `out` and `source`
  // are left alone and `text` is the result). Otherwise writes the result to `out` and, when `source` is
  // non-null, for each byte of `out` plus one past the end, the byte offset in `text` it came from (the
  // start of the changed span where a normalization rewrote characters), and returns true.
  bool normalize(std::string_view text, std::string& out, std::vector<uint32_t>* source) const;

 private:
  enum class Kind : uint8_t { kNfc, kNfd, kNfkc, kNfkd, kPrepend, kReplace, kPrependIfAbsent };
  struct Step {
    Kind kind;
    std::string a;  // Prepend: the prefix; Replace: the pattern
    std::string b;  // Replace: the content
  };
  std::vector<Step> steps_;
};

}  // namespace engine::data
