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
      result.forms_.insert(result.forms_.end(), inner.forms_.begin(), inner.forms_.end());
    }
  } else if (type == "NFC") {
    result.forms_.push_back(Form::kNfc);
  } else if (type == "NFD") {
    result.forms_.push_back(Form::kNfd);
  } else if (type == "NFKC") {
    result.forms_.push_back(Form::kNfkc);
  } else if (type == "NFKD") {
    result.forms_.push_back(Form::kNfkd);
  } else {
    fail_with(ENG_ERR_UNSUPPORTED,
              "{}: normalizer type \"{}\" is not supported (supported: NFC, NFD, NFKC, NFKD, Sequence)",
              where, type);
  }
  return result;
}

bool Normalizer::normalize(std::string_view text, std::string& out, std::vector<uint32_t>* source) const {
  if (forms_.empty() || is_ascii(text)) return false;  // every form leaves ASCII unchanged
  bool changed = false;
  std::string next;
  std::vector<uint32_t> next_source;
  for (Form form : forms_) {
    const icu::Normalizer2& n = instance(static_cast<int>(form));
    const std::string_view current = changed ? std::string_view(out) : text;
    const icu::StringPiece piece(current.data(), static_cast<int32_t>(current.size()));
    UErrorCode status = U_ZERO_ERROR;
    if (n.isNormalizedUTF8(piece, status) && U_SUCCESS(status)) continue;
    status = U_ZERO_ERROR;
    next.clear();
    icu::StringByteSink<std::string> sink(&next);
    icu::Edits edits;
    n.normalizeUTF8(0, piece, sink, source != nullptr ? &edits : nullptr, status);
    if (U_FAILURE(status))
      fail("text normalization failed ({}): the input is not valid UTF-8", u_errorName(status));
    if (source != nullptr) {
      if (!changed) {
        source->resize(text.size() + 1);
        for (size_t i = 0; i <= text.size(); ++i) (*source)[i] = static_cast<uint32_t>(i);
      }
      // Compose the byte map: each output byte points at the source of the first byte of its input span.
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
      source->swap(next_source);
    }
    out.swap(next);
    changed = true;
  }
  return changed;
}

}  // namespace engine::data
