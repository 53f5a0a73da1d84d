// TextStreamer: incremental detokenisation (see text_streamer.hpp).
#include "engine/session/text_streamer.hpp"

#include <utility>

namespace engine::session {

namespace {
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

bool ends_incomplete(const std::string& s) {
  return s.size() >= kReplacement.size() &&
         s.compare(s.size() - kReplacement.size(), kReplacement.size(), kReplacement) == 0;
}
}  // namespace

TextStreamer::TextStreamer(const data::Tokenizer& tokenizer, std::function<void(std::string_view)> sink)
    : tokenizer_(&tokenizer), sink_(std::move(sink)) {}

void TextStreamer::put(int32_t id) {
  ids_.push_back(id);
  std::string text = tokenizer_->decode(ids_, /*skip_special_tokens=*/true);
  if (ends_incomplete(text)) return;
  // text extends what was emitted (decoding more ids never changes earlier complete characters)
  if (text.size() > emitted_.size() && text.compare(0, emitted_.size(), emitted_) == 0) {
    std::string_view piece(text.data() + emitted_.size(), text.size() - emitted_.size());
    sink_(piece);
    emitted_ = std::move(text);
  }
}

void TextStreamer::finish() {
  std::string text = tokenizer_->decode(ids_, /*skip_special_tokens=*/true);
  if (text.size() > emitted_.size() && text.compare(0, emitted_.size(), emitted_) == 0) {
    sink_(std::string_view(text.data() + emitted_.size(), text.size() - emitted_.size()));
    emitted_ = std::move(text);
  }
}

}  // namespace engine::session
