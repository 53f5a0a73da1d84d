// engine/cpp/json.hpp: a small JSON reader for the strings the engine hands a plugin (its recipe options, a
// model's config.json), so that plugins need no JSON library. The engine has already validated the options
// against the plugin's schema and filled in every default, so plugins read them directly:
//   Json o = Json::parse(options_json);
//   double lr = o["lr"].as_double();                 // throws Error naming the key if absent or not a number
//   double beta = o.get("beta", 0.9);                // with a default
//   for (const Json& t : o["target_modules"].items()) targets.push_back(t.as_string());
// Numbers are doubles (integers are exact up to 2^53). Objects keep their keys sorted.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/cpp/error.hpp"

namespace engine::sdk {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  Json() = default;
  static Json parse(const std::string& text) {
    Parser p{text, 0};
    p.skip_ws();
    Json v = p.value(0);
    p.skip_ws();
    if (p.pos != text.size()) p.fail("unexpected text after the JSON value");
    return v;
  }

  Type type() const noexcept { return type_; }
  bool is_null() const noexcept { return type_ == Type::kNull; }
  bool is_bool() const noexcept { return type_ == Type::kBool; }
  bool is_number() const noexcept { return type_ == Type::kNumber; }
  bool is_string() const noexcept { return type_ == Type::kString; }
  bool is_array() const noexcept { return type_ == Type::kArray; }
  bool is_object() const noexcept { return type_ == Type::kObject; }

  bool as_bool() const {
    expect(Type::kBool, "a boolean");
    return bool_;
  }
  double as_double() const {
    expect(Type::kNumber, "a number");
    return number_;
  }
  int64_t as_int() const {
    expect(Type::kNumber, "a number");
    if (std::floor(number_) != number_)
      throw Error(where() + " must be an integer, got " + std::to_string(number_));
    return static_cast<int64_t>(number_);
  }
  const std::string& as_string() const {
    expect(Type::kString, "a string");
    return string_;
  }
  const std::vector<Json>& items() const {
    expect(Type::kArray, "an array");
    return array_;
  }
  const std::map<std::string, Json>& members() const {
    expect(Type::kObject, "an object");
    return object_;
  }
  size_t size() const noexcept { return type_ == Type::kArray ? array_.size() : object_.size(); }

  bool contains(const std::string& key) const { return type_ == Type::kObject && object_.count(key) != 0; }
  // Member access; throws Error naming the key when it is absent.
  const Json& operator[](const std::string& key) const {
    expect(Type::kObject, "an object");
    auto it = object_.find(key);
    if (it == object_.end()) throw Error("missing key '" + key + "' in " + where(), ENG_ERR_NOT_FOUND);
    return it->second;
  }
  const Json& operator[](size_t i) const {
    const std::vector<Json>& a = items();
    if (i >= a.size())
      throw Error(where() + ": index " + std::to_string(i) + " out of range", ENG_ERR_NOT_FOUND);
    return a[i];
  }
  // The member's value, or `fallback` when the key is absent or null.
  double get(const std::string& key, double fallback) const {
    return has(key) ? (*this)[key].as_double() : fallback;
  }
  int64_t get(const std::string& key, int64_t fallback) const {
    return has(key) ? (*this)[key].as_int() : fallback;
  }
  int get(const std::string& key, int fallback) const {
    return has(key) ? static_cast<int>((*this)[key].as_int()) : fallback;
  }
  bool get(const std::string& key, bool fallback) const {
    return has(key) ? (*this)[key].as_bool() : fallback;
  }
  std::string get(const std::string& key, const char* fallback) const {
    return has(key) ? (*this)[key].as_string() : std::string(fallback);
  }
  std::string get(const std::string& key, const std::string& fallback) const {
    return has(key) ? (*this)[key].as_string() : fallback;
  }

 private:
  bool has(const std::string& key) const { return contains(key) && !object_.at(key).is_null(); }
  std::string where() const { return path_.empty() ? std::string("the JSON value") : "'" + path_ + "'"; }
  void expect(Type t, const char* what) const {
    if (type_ != t) throw Error(where() + " must be " + what, ENG_ERR_INVALID_ARGUMENT);
  }

  struct Parser {
    const std::string& s;
    size_t pos;

    [[noreturn]] void fail(const std::string& why) const {
      throw Error("invalid JSON at offset " + std::to_string(pos) + ": " + why, ENG_ERR_INVALID_ARGUMENT);
    }
    void skip_ws() {
      while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r')) ++pos;
    }
    bool literal(const char* word) {
      size_t n = std::char_traits<char>::length(word);
      if (s.compare(pos, n, word) != 0) return false;
      pos += n;
      return true;
    }
    Json value(int depth) {
      if (depth > 256) fail("nesting deeper than 256");
      if (pos >= s.size()) fail("unexpected end of input");
      Json v;
      char c = s[pos];
      if (c == '{') {
        v.type_ = Type::kObject;
        ++pos;
        skip_ws();
        if (pos < s.size() && s[pos] == '}') return ++pos, v;
        for (;;) {
          skip_ws();
          if (pos >= s.size() || s[pos] != '"') fail("expected a string key");
          std::string key = string();
          skip_ws();
          if (pos >= s.size() || s[pos] != ':') fail("expected ':'");
          ++pos;
          skip_ws();
          Json member = value(depth + 1);
          member.set_path(key);
          v.object_[key] = std::move(member);
          skip_ws();
          if (pos < s.size() && s[pos] == ',') {
            ++pos;
            continue;
          }
          if (pos < s.size() && s[pos] == '}') {
            ++pos;
            break;
          }
          fail("expected ',' or '}'");
        }
      } else if (c == '[') {
        v.type_ = Type::kArray;
        ++pos;
        skip_ws();
        if (pos < s.size() && s[pos] == ']') return ++pos, v;
        for (;;) {
          skip_ws();
          v.array_.push_back(value(depth + 1));
          skip_ws();
          if (pos < s.size() && s[pos] == ',') {
            ++pos;
            continue;
          }
          if (pos < s.size() && s[pos] == ']') {
            ++pos;
            break;
          }
          fail("expected ',' or ']'");
        }
      } else if (c == '"') {
        v.type_ = Type::kString;
        v.string_ = string();
      } else if (literal("true")) {
        v.type_ = Type::kBool;
        v.bool_ = true;
      } else if (literal("false")) {
        v.type_ = Type::kBool;
      } else if (literal("null")) {
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        const char* begin = s.c_str() + pos;
        char* end = nullptr;
        v.type_ = Type::kNumber;
        v.number_ = std::strtod(begin, &end);
        if (end == begin) fail("bad number");
        pos += static_cast<size_t>(end - begin);
      } else {
        fail(std::string("unexpected character '") + c + "'");
      }
      return v;
    }
    unsigned hex4() {
      if (pos + 4 > s.size()) fail("truncated \\u escape");
      unsigned u = 0;
      for (int i = 0; i < 4; ++i) {
        char h = s[pos++];
        u <<= 4;
        if (h >= '0' && h <= '9')
          u |= static_cast<unsigned>(h - '0');
        else if (h >= 'a' && h <= 'f')
          u |= static_cast<unsigned>(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
          u |= static_cast<unsigned>(h - 'A' + 10);
        else
          fail("bad \\u escape");
      }
      return u;
    }
    static void utf8(std::string& out, unsigned cp) {
      if (cp < 0x80) {
        out += static_cast<char>(cp);
      } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      }
    }
    std::string string() {
      ++pos;  // opening quote
      std::string out;
      for (;;) {
        if (pos >= s.size()) fail("unterminated string");
        char c = s[pos++];
        if (c == '"') return out;
        if (c != '\\') {
          out += c;
          continue;
        }
        if (pos >= s.size()) fail("unterminated escape");
        char e = s[pos++];
        switch (e) {
          case '"':
            out += '"';
            break;
          case '\\':
            out += '\\';
            break;
          case '/':
            out += '/';
            break;
          case 'b':
            out += '\b';
            break;
          case 'f':
            out += '\f';
            break;
          case 'n':
            out += '\n';
            break;
          case 'r':
            out += '\r';
            break;
          case 't':
            out += '\t';
            break;
          case 'u': {
            unsigned cp = hex4();
            if (cp >= 0xD800 && cp < 0xDC00 && pos + 6 <= s.size() && s[pos] == '\\' && s[pos + 1] == 'u') {
              pos += 2;
              unsigned lo = hex4();
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            utf8(out, cp);
            break;
          }
          default:
            fail(std::string("bad escape \\") + e);
        }
      }
    }
  };

  void set_path(const std::string& key) {
    path_ = key;
    for (auto& [k, v] : object_) v.set_path(key + "." + k);
  }

  Type type_ = Type::kNull;
  bool bool_ = false;
  double number_ = 0.0;
  std::string string_;
  std::vector<Json> array_;
  std::map<std::string, Json> object_;
  std::string path_;
};

}  // namespace engine::sdk
