#include "engine/data/tokenizer.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/core/error.hpp"
#include "engine/core/utf8.hpp"
#include "engine/data/added_tokens.hpp"
#include "engine/data/bpe.hpp"
#include "engine/data/byte_level.hpp"
#include "engine/data/decoder.hpp"
#include "engine/data/normalizer.hpp"
#include "engine/data/pre_tokenizer.hpp"
#include "engine/data/utf8_codec.hpp"

namespace engine::data {
namespace {

// The TemplateProcessing post-processor, single-sequence form: ids before and after $A.
struct Template {
  std::vector<int32_t> before, after;
};

void add_template_items(const nlohmann::json& spec, Template& out, const std::string& where) {
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    for (const auto& child : spec.at("processors")) add_template_items(child, out, where);
  } else if (type == "ByteLevel") {
    // Only adjusts offsets in HF; ids are unchanged.
  } else if (type == "TemplateProcessing") {
    bool seen_sequence = false;
    const auto& specials = spec.at("special_tokens");
    for (const auto& item : spec.at("single")) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
      } else if (item.contains("SpecialToken")) {
        const std::string name = item["SpecialToken"].at("id").get<std::string>();
        if (!specials.contains(name))
          fail("{}: post_processor uses special token {} it does not define", where, name);
        for (const auto& id : specials[name].at("ids"))
          (seen_sequence ? out.after : out.before).push_back(read_token_id(id, "special token " + name, where));
      }
    }
  } else {
    fail_with(ENG_ERR_UNSUPPORTED,
              "{}: post-processor type \"{}\" is not supported (supported: TemplateProcessing, ByteLevel, "
              "Sequence)",
              where, type);
  }
}

}  // namespace

struct Tokenizer::Impl {
  std::string source;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  BpeModel model;
  AddedVocabulary added;
  Template post;
  bool byte_level_decoder = false;       // decoder is exactly ByteLevel: the per-id table decodes
  std::optional<Decoder> chain_decoder;  // any other decoder
  std::optional<Normalizer> metaspace_prepend, metaspace_plain;  // Metaspace pre-tokenizer rewrites
  std::vector<std::string> decoded;   // id -> bytes the decoder produces for it (ByteLevel), else the token
  std::vector<uint32_t> byte_length;  // id -> raw byte length of the token (byte-level models), for offsets
  std::vector<bool> special;
};

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_file(const std::filesystem::path& path) {
  std::filesystem::path file = path;
  if (std::filesystem::is_directory(file)) file /= "tokenizer.json";
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    fail_with(ENG_ERR_IO,
              "cannot open tokenizer file {}: give a tokenizer.json or a model directory that has one",
              file.string());
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return from_json_text(buffer.str(), file.string());
}

Tokenizer Tokenizer::from_json_text(std::string_view text, const std::string& where) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{} is not valid JSON: {}", where, e.what());
  }
  Tokenizer result;
  result.impl_ = std::make_unique<Impl>();
  Impl& impl = *result.impl_;
  impl.source = where;
  try {
    if (!json.is_object() || !json.contains("model")) fail("{}: not a tokenizer.json (no \"model\")", where);
    impl.normalizer = Normalizer::from_json(json.value("normalizer", nlohmann::json()), where);
    impl.pre_tokenizer = PreTokenizer::from_json(json.value("pre_tokenizer", nlohmann::json()), where);
    impl.model = BpeModel::from_json(json.at("model"), impl.pre_tokenizer.byte_level(), where);
    if (json.contains("post_processor") && !json["post_processor"].is_null()) {
      add_template_items(json["post_processor"], impl.post, where);
    }
    const nlohmann::json decoder = json.value("decoder", nlohmann::json());
    if (!decoder.is_null()) {
      Decoder d = Decoder::from_json(decoder, where);
      if (d.is_byte_level_only()) {
        impl.byte_level_decoder = true;
      } else {
        impl.chain_decoder = std::move(d);
      }
    }
    if (const auto* ms = impl.pre_tokenizer.metaspace()) {
      impl.metaspace_prepend = Normalizer::metaspace(ms->replacement, true);
      impl.metaspace_plain = Normalizer::metaspace(ms->replacement, false);
    }
    size_t size = impl.model.vocab_size();
    if (json.contains("added_tokens")) {
      for (const auto& t : json["added_tokens"]) {
        AddedToken token;
        token.content = t.at("content").get<std::string>();
        token.id = read_token_id(t.at("id"), "added token \"" + token.content + "\"", where);
        token.special = t.value("special", false);
        token.lstrip = t.value("lstrip", false);
        token.rstrip = t.value("rstrip", false);
        token.normalized = t.value("normalized", false);
        token.single_word = t.value("single_word", false);
        size = std::max(size, static_cast<size_t>(token.id) + 1);
        impl.added.add(std::move(token), impl.normalizer);
      }
    }
    // Per-id decode bytes and byte lengths.
    impl.decoded.resize(size);
    impl.byte_length.assign(size, 0);
    impl.special.assign(size, false);
    for (size_t id = 0; id < impl.model.vocab_size(); ++id) {
      const std::string& token = impl.model.id_to_token(static_cast<int32_t>(id));
      std::optional<std::string> raw;
      if (impl.pre_tokenizer.byte_level() || impl.byte_level_decoder) raw = alphabet_to_bytes(token);
      // <0xXX> byte-fallback tokens stand for one byte of the text.
      const bool byte_token = impl.model.byte_fallback() && token.size() == 6 && token.starts_with("<0x");
      impl.byte_length[id] = static_cast<uint32_t>(raw ? raw->size() : byte_token ? 1 : token.size());
      impl.decoded[id] = impl.byte_level_decoder && raw ? *raw : token;
    }
    for (const auto& token : impl.added.tokens()) {
      const auto id = static_cast<size_t>(token.id);
      std::optional<std::string> raw;
      if (impl.byte_level_decoder) raw = alphabet_to_bytes(token.content);
      impl.decoded[id] = raw ? *raw : token.content;
      impl.byte_length[id] = static_cast<uint32_t>(token.content.size());
      impl.special[id] = token.special;
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected tokenizer.json structure: {}", where, e.what());
  }
  return result;
}

void Tokenizer::encode_into(std::string_view text, bool add_special_tokens, Encoding& out,
                            bool offsets) const {
  const Impl& impl = *impl_;
  if (const size_t bad = first_invalid_utf8(text); bad != text.size()) {
    fail("cannot tokenize: the text is not valid UTF-8 at byte {} (of {})", bad, text.size());
  }
  if (add_special_tokens) {
    out.ids.insert(out.ids.end(), impl.post.before.begin(), impl.post.before.end());
    if (offsets) out.starts.resize(out.ids.size(), 0);
  }
  std::vector<TextSegment> raw_segments, normalized_segments;
  std::vector<Piece> pieces;
  std::vector<uint32_t> source, metaspace_source;
  std::string normalized, metaspaced, word;
  impl.added.split(text, false, raw_segments);
  for (const TextSegment& seg : raw_segments) {
    if (seg.id >= 0) {
      out.ids.push_back(seg.id);
      if (offsets) out.starts.push_back(seg.start);
      continue;
    }
    const std::string_view part = text.substr(seg.start, seg.end - seg.start);
    const bool changed = impl.normalizer.normalize(part, normalized, offsets ? &source : nullptr);
    const std::string_view norm = changed ? std::string_view(normalized) : part;
    // Byte offset in `text` of byte i of `norm`.
    const auto origin = [&](size_t i) { return seg.start + static_cast<uint32_t>(changed ? source[i] : i); };
    normalized_segments.clear();
    if (impl.added.has_normalized()) {
      impl.added.split(norm, true, normalized_segments);
    } else {
      normalized_segments.push_back({0, static_cast<uint32_t>(norm.size()), -1});
    }
    for (const TextSegment& nseg : normalized_segments) {
      if (nseg.id >= 0) {
        out.ids.push_back(nseg.id);
        if (offsets) out.starts.push_back(origin(nseg.start));
        continue;
      }
      std::string_view span = norm.substr(nseg.start, nseg.end - nseg.start);
      // Metaspace: spaces become the replacement, prepended on every span (always) or only on the one at the
      // very start of the input (first).
      bool rewritten = false;
      if (const auto* ms = impl.pre_tokenizer.metaspace()) {
        using P = PreTokenizer::Metaspace::Prepend;
        const bool prepend =
            ms->prepend == P::kAlways || (ms->prepend == P::kFirst && origin(nseg.start) == 0);
        rewritten = (prepend ? *impl.metaspace_prepend : *impl.metaspace_plain)
                        .normalize(span, metaspaced, offsets ? &metaspace_source : nullptr);
        if (rewritten) span = metaspaced;
      }
      // Byte offset in `text` of byte j of `span`.
      const auto span_origin = [&](size_t j) {
        return origin(nseg.start + (rewritten ? metaspace_source[j] : j));
      };
      pieces.clear();
      impl.pre_tokenizer.split(span, pieces);
      for (const Piece& p : pieces) {
        std::string_view bytes = span.substr(p.start, p.end - p.start);
        if (p.prefix_space) {
          word.assign(1, ' ');
          word.append(bytes);
          bytes = word;
        }
        const size_t first = out.ids.size();
        impl.model.encode_word(bytes, out.ids);
        if (offsets) {
          // Token k of the piece starts after the bytes of tokens 0..k-1 (less the virtual prefix space).
          int64_t at = static_cast<int64_t>(p.start) - (p.prefix_space ? 1 : 0);
          for (size_t k = first; k < out.ids.size(); ++k) {
            const int64_t clamped = std::clamp<int64_t>(at, p.start, p.end);
            out.starts.push_back(span_origin(static_cast<size_t>(clamped)));
            at += impl.byte_length[static_cast<size_t>(out.ids[k])];
          }
        }
      }
    }
  }
  if (add_special_tokens) {
    out.ids.insert(out.ids.end(), impl.post.after.begin(), impl.post.after.end());
    if (offsets) out.starts.resize(out.ids.size(), static_cast<uint32_t>(text.size()));
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  Encoding out;
  out.ids.reserve(text.size() / 3 + 4);
  encode_into(text, add_special_tokens, out, false);
  return std::move(out.ids);
}

Encoding Tokenizer::encode_with_offsets(std::string_view text, bool add_special_tokens) const {
  Encoding out;
  encode_into(text, add_special_tokens, out, true);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& impl = *impl_;
  std::string bytes;
  std::vector<std::string> tokens;
  bool first = true;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= impl.decoded.size()) {
      fail("cannot decode id {}: the vocabulary of {} has ids 0..{}", id, impl.source,
           impl.decoded.size() - 1);
    }
    if (skip_special_tokens && impl.special[static_cast<size_t>(id)]) continue;
    if (impl.chain_decoder) {
      tokens.push_back(impl.decoded[static_cast<size_t>(id)]);
      continue;
    }
    if (!impl.byte_level_decoder && !first) bytes.push_back(' ');  // HF joins with spaces without a decoder
    bytes += impl.decoded[static_cast<size_t>(id)];
    first = false;
  }
  if (impl.chain_decoder) return impl.chain_decoder->decode(std::move(tokens));
  return utf8_lossy(bytes);
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (const AddedToken* t = impl_->added.find(token)) return t->id;
  return impl_->model.token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (const AddedToken* t = impl_->added.find(id)) return t->content;
  return impl_->model.id_to_token(id);
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() &&
         impl_->special[static_cast<size_t>(id)];
}

size_t Tokenizer::vocab_size() const { return impl_->decoded.size(); }

const std::string& Tokenizer::source() const { return impl_->source; }

}  // namespace engine::data
