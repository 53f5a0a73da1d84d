// One example as token ids plus its loss labels.
//
// Labels are ALREADY SHIFTED: labels[t] is the target for position t, i.e. ids[t + 1] when token t + 1 is
// trained and -100 (kIgnoreIndex) otherwise; the last position's label is -100. The fused loss consumes
// them as they are (no shift in the trainer), and a packed row never predicts across samples.
//
// Which tokens are trained: for chat examples (messages, alpaca) only the assistant's tokens, i.e. the tokens
// that start inside a RenderedChat::assistant span: the reply and its end-of-turn token (<|im_end|> /
// <|eot_id|>), so fine-tuned models learn to stop. train_on_prompt = true trains every token after the first.
// The whole rendered conversation is tokenized at once (ids identical to tokenizing the template's text),
// and token offsets decide membership. Plain-text examples train every token, with text_eos_token appended.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/data/chat_template.hpp"
#include "engine/data/dataset.hpp"
#include "engine/data/tokenizer.hpp"

namespace engine::data {

inline constexpr int32_t kIgnoreIndex = -100;

struct TokenizedSample {
  std::vector<int32_t> ids;     // (n)
  std::vector<int32_t> labels;  // (n), shifted: labels[t] = ids[t + 1] or -100
};

struct SampleOptions {
  bool train_on_prompt = false;  // data.train_on_prompt
  std::string text_eos_token;    // appended to plain-text examples when not empty (e.g. "<|endoftext|>")
};

// Tokenizes one example. Throws engine::Error (naming example.where) when the example has no trained token
// or text_eos_token is not in the vocabulary.
TokenizedSample tokenize_example(const Example& example, const Tokenizer& tokenizer, const ChatTemplate& chat,
                                 const SampleOptions& options);

// Number of labels that are not -100.
int64_t count_label_tokens(const std::vector<int32_t>& labels);

}  // namespace engine::data
