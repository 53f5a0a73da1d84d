// libFuzzer target: tokenizer.json loading plus encoding and decoding. The input is a tokenizer.json text,
// optionally followed by "\n--text--\n" and a text to encode (else a few fixed texts are encoded). Every id
// the encoder returns must decode (ids out of the vocabulary would be a bug), offsets stay in the text.
#include <string>

#include "engine/data/tokenizer.hpp"
#include "fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [json, text] = engine::fuzz::split_once(engine::fuzz::as_text(data, size), "\n--text--\n");
  engine::fuzz::expect_clean([&, json = json, text = text] {
    const engine::data::Tokenizer tok = engine::data::Tokenizer::from_json_text(json, "fuzz/tokenizer.json");
    const std::string fixed[] = {"Hello, world!", " <|im_start|>user\nhi<|im_end|>", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac 123"};
    auto encode = [&](std::string_view t) {
      engine::fuzz::expect_clean([&] {
        const engine::data::Encoding e = tok.encode_with_offsets(t, true);
        for (uint32_t start : e.starts) {
          if (start > t.size()) __builtin_trap();  // an offset outside the text
        }
        (void)tok.decode(e.ids, false);
        (void)tok.decode(e.ids, true);
      });
    };
    if (text.empty()) {
      for (const std::string& t : fixed) encode(t);
    } else {
      encode(text);
    }
  });
  return 0;
}
