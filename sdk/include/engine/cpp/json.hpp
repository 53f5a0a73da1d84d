// engine/cpp/json.hpp: a typed view, over nlohmann/json, of the strings the engine hands a plugin (its recipe
// options, a model's config.json), with errors that name the offending key. The engine has already validated the options
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

#include <nlohmann/json.hpp>

#include "engine/cpp/error.hpp"

namespace engine::sdk {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  Json() = default;
  static Json parse(const std::string& text) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
      throw Error(std::string("invalid JSON: ") + e.what(), ENG_ERR_INVALID_ARGUMENT);
    }
    return from(j);
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
    // Numbers are held as doubles: past +-2^63 the conversion would be undefined (it gave INT64_MIN).
    if (!(number_ >= -9223372036854775808.0 && number_ < 9223372036854775808.0))
      throw Error(where() + " is out of the range of a 64-bit integer, got " + std::to_string(number_));
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

  // Builds the typed view from nlohmann/json's parse tree (the parsing itself is nlohmann's).
  static Json from(const nlohmann::json& j) {
    Json v;
    switch (j.type()) {
      case nlohmann::json::value_t::null: break;
      case nlohmann::json::value_t::boolean: v.type_ = Type::kBool; v.bool_ = j.get<bool>(); break;
      case nlohmann::json::value_t::number_integer:
      case nlohmann::json::value_t::number_unsigned:
      case nlohmann::json::value_t::number_float: v.type_ = Type::kNumber; v.number_ = j.get<double>(); break;
      case nlohmann::json::value_t::string: v.type_ = Type::kString; v.string_ = j.get<std::string>(); break;
      case nlohmann::json::value_t::array:
        v.type_ = Type::kArray;
        for (const auto& item : j) v.array_.push_back(from(item));
        break;
      case nlohmann::json::value_t::object:
        v.type_ = Type::kObject;
        for (const auto& [key, item] : j.items()) {
          Json member = from(item);
          member.set_path(key);
          v.object_[key] = std::move(member);
        }
        break;
      default: throw Error("unsupported JSON value (binary or discarded)", ENG_ERR_INVALID_ARGUMENT);
    }
    return v;
  }

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
