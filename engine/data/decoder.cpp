#include "engine/data/decoder.hpp"

#include <nlohmann/json.hpp>

#include "engine/core/error.hpp"
#include "engine/core/utf8.hpp"
#include "engine/data/byte_level.hpp"
#include "engine/data/utf8_codec.hpp"

namespace engine::data {
namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}

// "<0xAB>" -> 0xAB
bool parse_byte_token(const std::string& token, unsigned char& byte) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return false;
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(token[3]), lo = hex(token[4]);
  if (hi < 0 || lo < 0) return false;
  byte = static_cast<unsigned char>(hi * 16 + lo);
  return true;
}

}  // namespace

Decoder Decoder::from_json(const nlohmann::json& spec, const std::string& where) {
  Decoder result;
  const std::string type = spec.value("type", "");
  Step step{};
  if (type == "Sequence") {
    for (const auto& child : spec.at("decoders")) {
      Decoder inner = from_json(child, where);
      result.steps_.insert(result.steps_.end(), inner.steps_.begin(), inner.steps_.end());
    }
    return result;
  } else if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
  } else if (type == "Replace") {
    if (!spec.at("pattern").contains("String")) {
      fail_with(ENG_ERR_UNSUPPORTED, "{}: decoder Replace with a Regex pattern is not supported", where);
    }
    step.kind = Kind::kReplace;
    step.a = spec["pattern"]["String"].get<std::string>();
    step.b = spec.at("content").get<std::string>();
  } else if (type == "ByteFallback") {
    step.kind = Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = Kind::kStrip;
    step.a = spec.at("content").get<std::string>();
    step.start = spec.value("start", size_t{0});
    step.stop = spec.value("stop", size_t{0});
  } else if (type == "Metaspace") {
    step.kind = Kind::kMetaspace;
    step.a = spec.value("replacement", std::string("\u2581"));
    const std::string scheme = spec.contains("prepend_scheme")
                                   ? spec["prepend_scheme"].get<std::string>()
                                   : (spec.value("add_prefix_space", true) ? "always" : "never");
    step.flag = scheme != "never";
  } else {
    fail_with(
        ENG_ERR_UNSUPPORTED,
        "{}: decoder type \"{}\" is not supported (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, "
        "Metaspace, Sequence)",
        where, type);
  }
  result.steps_.push_back(step);
  return result;
}

std::string Decoder::decode(std::vector<std::string> tokens) const {
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kByteLevel:
        for (auto& t : tokens) {
          if (auto raw = alphabet_to_bytes(t)) t = std::move(*raw);
        }
        break;
      case Kind::kReplace:
        for (auto& t : tokens) replace_all(t, step.a, step.b);
        break;
      case Kind::kByteFallback: {
        std::vector<std::string> out;
        std::string bytes;
        size_t count = 0;
        const auto flush = [&] {
          if (count == 0) return;
          if (first_invalid_utf8(bytes) == bytes.size()) {
            out.push_back(bytes);
          } else {
            for (size_t k = 0; k < count; ++k) out.emplace_back("\xEF\xBF\xBD");
          }
          bytes.clear();
          count = 0;
        };
        for (auto& t : tokens) {
          unsigned char byte = 0;
          if (parse_byte_token(t, byte)) {
            bytes.push_back(static_cast<char>(byte));
            ++count;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case Kind::kFuse: {
        std::string all;
        for (const auto& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case Kind::kStrip:
        for (auto& t : tokens) {
          size_t front = 0, back = 0;
          while (front < step.start && t.compare(front * step.a.size(), step.a.size(), step.a) == 0) ++front;
          t.erase(0, front * step.a.size());
          while (back < step.stop && t.size() >= step.a.size() &&
                 t.compare(t.size() - step.a.size(), step.a.size(), step.a) == 0) {
            t.erase(t.size() - step.a.size());
            ++back;
          }
        }
        break;
      case Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          replace_all(tokens[i], step.a, i == 0 && step.flag ? "" : " ");
        }
        break;
    }
  }
  std::string text;
  for (const auto& t : tokens) text += t;
  return utf8_lossy(text);
}

}  // namespace engine::data
