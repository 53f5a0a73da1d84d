#include "engine/data/tokenized_sample.hpp"

#include <algorithm>

#include "engine/core/error.hpp"

namespace engine::data {

TokenizedSample tokenize_example(const Example& example, const Tokenizer& tokenizer, const ChatTemplate& chat,
                                 const SampleOptions& options) {
  TokenizedSample out;
  std::vector<bool> trained;  // per position: is this token a training target
  if (example.is_tokens) {
    out.ids = example.ids;
    trained.assign(out.ids.size(), true);
  } else if (example.is_text) {
    out.ids = tokenizer.encode(example.text, false);
    if (!options.text_eos_token.empty()) {
      const auto eos = tokenizer.token_to_id(options.text_eos_token);
      if (!eos)
        fail("text_eos_token \"{}\" is not in the vocabulary of {}", options.text_eos_token,
             tokenizer.source());
      out.ids.push_back(*eos);
    }
    trained.assign(out.ids.size(), true);
  } else {
    const RenderedChat rendered = chat.render(example.messages, false);
    Encoding enc = tokenizer.encode_with_offsets(rendered.text, false);
    out.ids = std::move(enc.ids);
    trained.assign(out.ids.size(), options.train_on_prompt);
    if (!options.train_on_prompt) {
      size_t span = 0;
      for (size_t t = 0; t < out.ids.size(); ++t) {
        while (span < rendered.assistant.size() && rendered.assistant[span].end <= enc.starts[t]) ++span;
        trained[t] = span < rendered.assistant.size() && rendered.assistant[span].start <= enc.starts[t];
      }
    }
  }
  out.labels.assign(out.ids.size(), kIgnoreIndex);
  for (size_t t = 0; t + 1 < out.ids.size(); ++t) {
    if (trained[t + 1]) out.labels[t] = out.ids[t + 1];
  }
  if (count_label_tokens(out.labels) == 0) fail("{}: the example has no token to train on", example.where);
  return out;
}

int64_t count_label_tokens(const std::vector<int32_t>& labels) {
  return std::count_if(labels.begin(), labels.end(), [](int32_t l) { return l != kIgnoreIndex; });
}

}  // namespace engine::data
