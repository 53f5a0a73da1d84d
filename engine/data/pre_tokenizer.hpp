// The pre-tokenizer stage of a tokenizer.json: cuts normalized text into pieces ("words") that BPE encodes
// one by one. Supported: "Sequence", "Split" (String or Regex pattern, every behavior, invert), "ByteLevel"
// (add_prefix_space, use_regex with GPT-2's pattern), "Digits" and "Metaspace" (alone: its space rewrite is
// done by the Tokenizer, see metaspace()). Regexes run on PCRE2 with UTF and UCP (Unicode properties for
// \p{L}, \s, ...), JIT-compiled. Other types are refused by name at load time.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace engine::data {

// A piece of the normalized text: bytes [start, end), with a space to put in front (ByteLevel's
// add_prefix_space) when prefix_space is set.
struct Piece {
  uint32_t start = 0;
  uint32_t end = 0;
  bool prefix_space = false;
};

class PreTokenizer {
 public:
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Builds the chain described by tokenizer.json's "pre_tokenizer" (null: the whole text is one piece).
  static PreTokenizer from_json(const nlohmann::json& spec, const std::string& where);

  // True when the chain contains ByteLevel: the model then sees bytes mapped to GPT-2's printable alphabet.
  bool byte_level() const noexcept { return byte_level_; }

  // A Metaspace pre-tokenizer rewrites the text (spaces to `replacement`, prepended per scheme) before it
  // splits (on `replacement`, merged with the next piece, when `split`); the Tokenizer applies the rewrite.
  struct Metaspace {
    enum class Prepend { kAlways, kFirst, kNever };
    std::string replacement = "\u2581";
    Prepend prepend = Prepend::kAlways;
    bool split = true;
  };
  const Metaspace* metaspace() const noexcept { return metaspace_.get(); }

  // Cuts valid UTF-8 `text` into pieces (appended to `pieces`, in order, none empty).
  void split(std::string_view text, std::vector<Piece>& pieces) const;

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
  bool byte_level_ = false;
  std::unique_ptr<Metaspace> metaspace_;
};

}  // namespace engine::data
