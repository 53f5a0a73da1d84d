#include "engine/data/pre_tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "engine/core/error.hpp"

namespace engine::data {
namespace {

// GPT-2's pattern, which ByteLevel applies when use_regex is true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior : uint8_t { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  fail_with(
      ENG_ERR_UNSUPPORTED,
      "{}: Split behavior \"{}\" is unknown (known: Removed, Isolated, MergedWithPrevious, MergedWithNext, "
      "Contiguous)",
      where, name);
}

struct Span {
  size_t start, end;
  bool flag;  // is a match (before folding) / is removed (after folding)
};

}  // namespace

struct PreTokenizer::Step {
  bool prefix_space_only = false;  // ByteLevel's add_prefix_space: mark pieces, do not split
  pcre2_code* code = nullptr;
  Behavior behavior = Behavior::kIsolated;
  bool invert = false;

  ~Step() { pcre2_code_free(code); }

  static std::unique_ptr<Step> regex(const std::string& pattern, bool literal, Behavior behavior, bool invert,
                                     const std::string& where) {
    auto step = std::make_unique<Step>();
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    const uint32_t options =
        literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;  // LITERAL refuses UCP
    step->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error,
                               &error_offset, nullptr);
    if (step->code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      fail("{}: the pre-tokenizer regex /{}/ does not compile with PCRE2 at offset {}: {}", where, pattern,
           error_offset, reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(step->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is absent
    step->behavior = behavior;
    step->invert = invert;
    return step;
  }

  // Finds the matches of the regex in `subject` as HF's find_matches does: alternating non-match and match
  // spans covering the subject (an empty subject gives one empty non-match span).
  void find_matches(std::string_view subject, std::vector<Span>& spans) const {
    spans.clear();
    if (subject.empty()) {
      spans.push_back({0, 0, false});
      return;
    }
    pcre2_match_data* data = pcre2_match_data_create_from_pattern(code, nullptr);
    pcre2_match_context* context = nullptr;
    pcre2_jit_stack* stack = nullptr;
    size_t previous = 0, offset = 0;
    const auto subject_ptr = reinterpret_cast<PCRE2_SPTR>(subject.data());
    while (offset <= subject.size()) {
      int rc = pcre2_match(code, subject_ptr, subject.size(), offset, PCRE2_NO_UTF_CHECK, data, context);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT && stack == nullptr) {
        // Very long runs (thousands of spaces) need more than the default 32 KiB JIT stack.
        context = pcre2_match_context_create(nullptr);
        stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
        pcre2_jit_stack_assign(context, nullptr, stack);
        continue;
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        pcre2_match_data_free(data);
        pcre2_match_context_free(context);
        pcre2_jit_stack_free(stack);
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof(message));
        fail("pre-tokenizer regex failed on a text of {} bytes: {}", subject.size(),
             reinterpret_cast<const char*>(message));
      }
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
      const size_t start = ovector[0], end = ovector[1];
      if (previous != start) spans.push_back({previous, start, false});
      spans.push_back({start, end, true});
      previous = end;
      if (end == start) {
        if (start >= subject.size()) break;
        size_t step = 1;
        while (start + step < subject.size() &&
               (static_cast<unsigned char>(subject[start + step]) & 0xC0) == 0x80)
          ++step;
        offset = start + step;
      } else {
        offset = end;
      }
    }
    if (previous != subject.size()) spans.push_back({previous, subject.size(), false});
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
  }

  // Folds match spans into the pieces to keep, as HF's NormalizedString::split does per behavior.
  void fold(std::vector<Span>& spans, std::vector<Span>& out) const {
    out.clear();
    if (invert) {
      for (auto& s : spans) s.flag = !s.flag;
    }
    bool previous_match = false;
    switch (behavior) {
      case Behavior::kIsolated:
        for (const auto& s : spans) out.push_back({s.start, s.end, false});
        break;
      case Behavior::kRemoved:
        for (const auto& s : spans) out.push_back(s);
        break;
      case Behavior::kContiguous:
        for (const auto& s : spans) {
          if (s.flag == previous_match && !out.empty()) {
            out.back().end = s.end;
          } else {
            out.push_back({s.start, s.end, false});
          }
          previous_match = s.flag;
        }
        break;
      case Behavior::kMergedWithPrevious:
        for (const auto& s : spans) {
          if (s.flag && !previous_match && !out.empty()) {
            out.back().end = s.end;
          } else {
            out.push_back({s.start, s.end, false});
          }
          previous_match = s.flag;
        }
        break;
      case Behavior::kMergedWithNext:
        for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
          if (it->flag && !previous_match && !out.empty()) {
            out.back().start = it->start;
          } else {
            out.push_back({it->start, it->end, false});
          }
          previous_match = it->flag;
        }
        std::reverse(out.begin(), out.end());
        break;
    }
  }
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

PreTokenizer PreTokenizer::from_json(const nlohmann::json& spec, const std::string& where) {
  PreTokenizer result;
  if (spec.is_null()) return result;
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    const auto& children = spec.at("pretokenizers");
    for (const auto& child : children) {
      PreTokenizer inner = from_json(child, where);
      if (inner.metaspace_ && children.size() > 1) {
        fail_with(ENG_ERR_UNSUPPORTED, "{}: a Metaspace pre-tokenizer combined with others is not supported",
                  where);
      }
      for (auto& step : inner.steps_) result.steps_.push_back(std::move(step));
      result.byte_level_ = result.byte_level_ || inner.byte_level_;
      if (inner.metaspace_) result.metaspace_ = std::move(inner.metaspace_);
    }
  } else if (type == "Split") {
    const auto& pattern = spec.at("pattern");
    const bool literal = pattern.contains("String");
    const std::string text =
        literal ? pattern.at("String").get<std::string>() : pattern.at("Regex").get<std::string>();
    result.steps_.push_back(Step::regex(text, literal,
                                        parse_behavior(spec.value("behavior", "Isolated"), where),
                                        spec.value("invert", false), where));
  } else if (type == "ByteLevel") {
    result.byte_level_ = true;
    // HF adds the prefix space to each incoming piece first, then splits it with GPT-2's regex.
    if (spec.value("add_prefix_space", true)) {
      auto step = std::make_unique<Step>();
      step->prefix_space_only = true;
      result.steps_.push_back(std::move(step));
    }
    if (spec.value("use_regex", true)) {
      result.steps_.push_back(Step::regex(kGpt2Pattern, false, Behavior::kIsolated, false, where));
    }
  } else if (type == "Metaspace") {
    auto ms = std::make_unique<Metaspace>();
    ms->replacement = spec.value("replacement", std::string("\u2581"));
    const std::string scheme = spec.contains("prepend_scheme")
                                   ? spec["prepend_scheme"].get<std::string>()
                                   : (spec.value("add_prefix_space", true) ? "always" : "never");
    if (scheme == "always") {
      ms->prepend = Metaspace::Prepend::kAlways;
    } else if (scheme == "first") {
      ms->prepend = Metaspace::Prepend::kFirst;
    } else if (scheme == "never") {
      ms->prepend = Metaspace::Prepend::kNever;
    } else {
      fail("{}: Metaspace prepend_scheme \"{}\" is unknown (known: always, first, never)", where, scheme);
    }
    ms->split = spec.value("split", true);
    if (ms->split) {
      result.steps_.push_back(Step::regex(ms->replacement, true, Behavior::kMergedWithNext, false, where));
    }
    result.metaspace_ = std::move(ms);
  } else if (type == "Digits") {
    const bool individual = spec.value("individual_digits", false);
    result.steps_.push_back(Step::regex(
        R"(\p{N})", false, individual ? Behavior::kIsolated : Behavior::kContiguous, false, where));
  } else {
    fail_with(
        ENG_ERR_UNSUPPORTED,
        "{}: pre-tokenizer type \"{}\" is not supported (supported: Sequence, Split, ByteLevel, Digits, "
        "Metaspace)",
        where, type);
  }
  return result;
}

void PreTokenizer::split(std::string_view text, std::vector<Piece>& pieces) const {
  if (text.empty()) return;
  const size_t first = pieces.size();
  pieces.push_back({0, static_cast<uint32_t>(text.size()), false});
  std::vector<Piece> next;
  std::vector<Span> spans, kept;
  std::string prefixed;
  for (const auto& step : steps_) {
    if (step->prefix_space_only) {
      for (size_t i = first; i < pieces.size(); ++i) {
        Piece& p = pieces[i];
        if (!p.prefix_space && (p.start == p.end || text[p.start] != ' ')) p.prefix_space = true;
      }
      continue;
    }
    next.clear();
    for (size_t i = first; i < pieces.size(); ++i) {
      const Piece p = pieces[i];
      std::string_view subject = text.substr(p.start, p.end - p.start);
      if (p.prefix_space) {
        prefixed.assign(1, ' ');
        prefixed.append(subject);
        subject = prefixed;
      }
      step->find_matches(subject, spans);
      step->fold(spans, kept);
      const uint32_t shift = p.prefix_space ? 1 : 0;
      for (const auto& s : kept) {
        if (s.flag || s.start == s.end) continue;  // removed, or empty
        Piece q;
        q.prefix_space = p.prefix_space && s.start == 0;
        q.start = p.start + static_cast<uint32_t>(s.start == 0 ? 0 : s.start - shift);
        q.end = p.start + static_cast<uint32_t>(s.end - shift);
        next.push_back(q);
      }
    }
    pieces.resize(first);
    pieces.insert(pieces.end(), next.begin(), next.end());
  }
}

}  // namespace engine::data
