// The decoder stage of a tokenizer.json for decoders other than a plain ByteLevel (which Tokenizer handles
// with a per-id table): a chain over the token strings, as HF's decode_chain, then concatenated.
// Supported: "ByteLevel", "Replace" (String pattern), "ByteFallback" (<0xXX> tokens to bytes), "Fuse",
// "Strip", "Metaspace", "Sequence" of those; others are refused by name at load time.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace engine::data {

class Decoder {
 public:
  static Decoder from_json(const nlohmann::json& spec, const std::string& where);

  // True when the chain is exactly one ByteLevel step.
  bool is_byte_level_only() const noexcept {
    return steps_.size() == 1 && steps_[0].kind == Kind::kByteLevel;
  }

  // Decodes token strings to text (invalid UTF-8 from byte tokens becomes U+FFFD).
  std::string decode(std::vector<std::string> tokens) const;

 private:
  enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
  struct Step {
    Kind kind;
    std::string a, b;  // Replace: pattern, content; Strip: the character; Metaspace: the replacement
    size_t start = 0, stop = 0;  // Strip: how many to remove at each end
    bool flag = false;  // Metaspace: drop the replacement in the first token (prepend_scheme != never)
  };
  std::vector<Step> steps_;
};

}  // namespace engine::data
