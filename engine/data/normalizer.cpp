#include "engine/data/normalizer.hpp"

#include <unicode/bytestream.h>
#include <unicode/edits.h>
#include <unicode/normalizer2.h>

#include <nlohmann/json.hpp>

#include "engine/core/error.hpp"

namespace engine::data {
namespace {

const icu::Normalizer2& instance(int form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case 0:
      n = icu::Normalizer2::getNFCInstance(status);
      break;
    case 1:
      n = icu::Normalizer2::getNFDInstance(status);
      break;
    case 2:
      n = icu::Normalizer2::getNFKCInstance(status);
      break;
    default:
      n = icu::Normalizer2::getNFKDInstance(status);
      break;
  }
  if (U_FAILURE(status) || n == nullptr) {
    fail_with(ENG_ERR_INTERNAL, "ICU normalizer data unavailable ({}); check the libicu installation",
              u_errorName(status));
  }
  return *n;
}

bool is_ascii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& spec, const std::string& where) {
  Normalizer result;
  if (spec.is_null()) return result;
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    for (const auto& child : spec.at("normalizers")) {
      Normalizer inner = from_json(child, where);
      result.steps_.insert(result.steps_.end(), inner.steps_.begin(), inner.steps_.end());
    }
  } else if (type == "NFC") {
    result.steps_.push_back({Kind::kNfc, {}, {}});
  } else if (type == "NFD") {
    result.steps_.push_back({Kind::kNfd, {}, {}});
  } else if (type == "NFKC") {
    result.steps_.push_back({Kind::kNfkc, {}, {}});
  } else if (type == "NFKD") {
    result.steps_.push_back({Kind::kNfkd, {}, {}});
  } else if (type == "Prepend") {
    result.steps_.push_back({Kind::kPrepend, spec.at("prepend").get<std::string>(), {}});
  } else if (type == "Replace") {
    const auto& pattern = spec.at("pattern");
    if (!pattern.contains("String")) {
      fail_with(ENG_ERR_UNSUPPORTED,
                "{}: normalizer Replace with a Regex pattern is not supported (only String)", where);
    }
    const std::string from = pattern.at("String").get<std::string>();
    if (from.empty()) fail("{}: normalizer Replace has an empty pattern", where);
    result.steps_.push_back({Kind::kReplace, from, spec.at("content").get<std::string>()});
  } else {
    fail_with(
        ENG_ERR_UNSUPPORTED,
        "{}: normalizer type \"{}\" is not supported (supported: NFC, NFD, NFKC, NFKD, Prepend, Replace, "
        "Sequence)",
        where, type);
  }
  return result;
}

Normalizer Normalizer::metaspace(const std::string& replacement, bool prepend) {
  Normalizer result;
  result.steps_.push_back({Kind::kReplace, " ", replacement});
  if (prepend) result.steps_.push_back({Kind::kPrependIfAbsent, replacement, {}});
  return result;
}

bool Normalizer::normalize(std::string_view text, std::string& out, std::vector<uint32_t>* source) const {
  if (steps_.empty()) return false;
  const bool ascii = is_ascii(text);
  bool changed = false;
  std::string next;
  std::vector<uint32_t> next_source;
  const auto identity_source = [&] {
    if (source != nullptr && !changed) {
      source->resize(text.size() + 1);
      for (size_t i = 0; i <= text.size(); ++i) (*source)[i] = static_cast<uint32_t>(i);
    }
  };
  const auto commit = [&] {
    out.swap(next);
    if (source != nullptr) source->swap(next_source);
    changed = true;
  };
  for (const Step& step : steps_) {
    const std::string_view current = changed ? std::string_view(out) : text;
    switch (step.kind) {
      case Kind::kPrepend:
      case Kind::kPrependIfAbsent: {
        if (current.empty() || (step.kind == Kind::kPrependIfAbsent && current.starts_with(step.a))) break;
        identity_source();
        next.assign(step.a);
        next.append(current);
        if (source != nullptr) {
          next_source.assign(step.a.size(), (*source)[0]);
          next_source.insert(next_source.end(), source->begin(), source->end());
        }
        commit();
        break;
      }
      case Kind::kReplace: {
        size_t hit = current.find(step.a);
        if (hit == std::string_view::npos) break;
        identity_source();
        next.clear();
        next_source.clear();
        size_t pos = 0;
        while (true) {
          const size_t stop = hit == std::string_view::npos ? current.size() : hit;
          next.append(current.substr(pos, stop - pos));
          if (source != nullptr) {
            next_source.insert(next_source.end(), source->begin() + static_cast<ptrdiff_t>(pos),
                               source->begin() + static_cast<ptrdiff_t>(stop));
          }
          if (hit == std::string_view::npos) break;
          next.append(step.b);
          if (source != nullptr) next_source.insert(next_source.end(), step.b.size(), (*source)[hit]);
          pos = hit + step.a.size();
          hit = current.find(step.a, pos);
        }
        if (source != nullptr) next_source.push_back((*source)[current.size()]);
        commit();
        break;
      }
      default: {
        if (ascii && !changed) break;  // every Unicode form leaves ASCII unchanged
        const icu::Normalizer2& n = instance(static_cast<int>(step.kind));
        const icu::StringPiece piece(current.data(), static_cast<int32_t>(current.size()));
        UErrorCode status = U_ZERO_ERROR;
        if (n.isNormalizedUTF8(piece, status) && U_SUCCESS(status)) break;
        status = U_ZERO_ERROR;
        identity_source();
        next.clear();
        icu::StringByteSink<std::string> sink(&next);
        icu::Edits edits;
        n.normalizeUTF8(0, piece, sink, source != nullptr ? &edits : nullptr, status);
        if (U_FAILURE(status)) {
          fail("text normalization failed ({}): the input is not valid UTF-8", u_errorName(status));
        }
        if (source != nullptr) {
          // Each output byte points at the source of the first byte of its input span.
          next_source.assign(next.size() + 1, 0);
          icu::Edits::Iterator it = edits.getFineIterator();
          while (it.next(status)) {
            const int32_t src = it.sourceIndex(), dst = it.destinationIndex();
            for (int32_t k = 0; k < it.newLength(); ++k) {
              next_source[static_cast<size_t>(dst + k)] =
                  (*source)[static_cast<size_t>(it.hasChange() ? src : src + k)];
            }
          }
          next_source[next.size()] = (*source)[current.size()];
        }
        commit();
        break;
      }
    }
  }
  return changed;
}

}  // namespace engine::data
