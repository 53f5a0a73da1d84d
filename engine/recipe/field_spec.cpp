#include "engine/recipe/field_spec.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "engine/core/error.hpp"
#include "engine/plugins/spelling.hpp"

namespace engine::recipe {

using nlohmann::json;

const char* field_type_name(FieldType t) noexcept {
  switch (t) {
    case FieldType::kString:
      return "string";
    case FieldType::kInteger:
      return "integer";
    case FieldType::kNumber:
      return "number";
    case FieldType::kBoolean:
      return "boolean";
    case FieldType::kArray:
      return "array";
    case FieldType::kObject:
      return "table";
    case FieldType::kAny:
      return "any";
  }
  return "any";
}

namespace {

std::optional<FieldType> type_from_schema(const std::string& t) {
  if (t == "string") return FieldType::kString;
  if (t == "integer") return FieldType::kInteger;
  if (t == "number") return FieldType::kNumber;
  if (t == "boolean") return FieldType::kBoolean;
  if (t == "array") return FieldType::kArray;
  if (t == "object") return FieldType::kObject;
  return std::nullopt;
}

// 1 rather than 1.0 for integral bounds.
std::string number_text(double x) {
  return std::floor(x) == x && std::fabs(x) < 1e15 ? std::to_string(static_cast<int64_t>(x)) : json(x).dump();
}

std::string describe_value(const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return "the string " + v.dump();
    case json::value_t::boolean:
      return "the boolean " + v.dump();
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "the integer " + v.dump();
    case json::value_t::number_float:
      return "the number " + v.dump();
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "a table";
    default:
      return "nothing";
  }
}

std::string check_type(FieldType type, const json& v) {
  bool ok = true;
  switch (type) {
    case FieldType::kString:
      ok = v.is_string();
      break;
    case FieldType::kInteger:
      ok = v.is_number_integer();
      break;
    case FieldType::kNumber:
      ok = v.is_number();
      break;
    case FieldType::kBoolean:
      ok = v.is_boolean();
      break;
    case FieldType::kArray:
      ok = v.is_array();
      break;
    case FieldType::kObject:
      ok = v.is_object();
      break;
    case FieldType::kAny:
      ok = true;
      break;
  }
  if (ok) return "";
  std::string hint;
  if (type == FieldType::kInteger && v.is_number_float()) hint = " (write it without a decimal point)";
  if ((type == FieldType::kNumber || type == FieldType::kInteger || type == FieldType::kBoolean) &&
      v.is_string()) {
    hint = " (remove the quotes)";
  }
  if (type == FieldType::kString && !v.is_string()) hint = " (put it in double quotes)";
  return std::string("must be ") + (type == FieldType::kInteger ? "an " : "a ") + field_type_name(type) +
         ", got " + describe_value(v) + hint;
}

}  // namespace

std::vector<FieldSpec> parse_schema(const std::string& schema_json, const std::string& plugin_name) {
  json schema;
  try {
    schema = json::parse(schema_json.empty() ? std::string("{}") : schema_json);
  } catch (const std::exception& e) {
    fail("plugin '{}' has a malformed options schema (not JSON: {}); its author must fix it", plugin_name,
         e.what());
  }
  std::vector<FieldSpec> out;
  if (!schema.is_object() || !schema.contains("properties")) return out;
  const json& props = schema["properties"];
  if (!props.is_object())
    fail("plugin '{}' has a malformed options schema: \"properties\" is not an object", plugin_name);
  std::vector<std::string> required;
  if (schema.contains("required") && schema["required"].is_array()) {
    for (const json& r : schema["required"]) {
      if (r.is_string()) required.push_back(r.get<std::string>());
    }
  }
  for (const auto& [name, p] : props.items()) {
    FieldSpec f;
    f.name = name;
    if (!p.is_object()) fail("plugin '{}': schema property '{}' is not an object", plugin_name, name);
    if (p.contains("type")) {
      if (!p["type"].is_string() || !type_from_schema(p["type"].get<std::string>())) {
        fail("plugin '{}': schema property '{}' has unsupported type {}", plugin_name, name,
             p["type"].dump());
      }
      f.type = *type_from_schema(p["type"].get<std::string>());
    }
    if (p.contains("items") && p["items"].is_object() && p["items"].contains("type") &&
        p["items"]["type"].is_string()) {
      f.item_type = type_from_schema(p["items"]["type"].get<std::string>()).value_or(FieldType::kAny);
    }
    if (p.contains("default")) f.default_value = p["default"];
    if (p.contains("enum") && p["enum"].is_array()) f.enum_values.assign(p["enum"].begin(), p["enum"].end());
    if (p.contains("minimum") && p["minimum"].is_number()) f.minimum = p["minimum"].get<double>();
    if (p.contains("maximum") && p["maximum"].is_number()) f.maximum = p["maximum"].get<double>();
    if (p.contains("description") && p["description"].is_string())
      f.description = p["description"].get<std::string>();
    f.required = std::find(required.begin(), required.end(), name) != required.end();
    out.push_back(std::move(f));
  }
  return out;
}

std::string check_value(const FieldSpec& spec, const json& value) {
  if (std::string e = check_type(spec.type, value); !e.empty()) return e;
  if (spec.type == FieldType::kArray && spec.item_type != FieldType::kAny) {
    for (size_t i = 0; i < value.size(); ++i) {
      if (std::string e = check_type(spec.item_type, value[i]); !e.empty()) {
        return "item " + std::to_string(i) + " " + e;
      }
    }
  }
  if (!spec.enum_values.empty() &&
      std::find(spec.enum_values.begin(), spec.enum_values.end(), value) == spec.enum_values.end()) {
    std::vector<std::string> allowed;
    for (const json& v : spec.enum_values) allowed.push_back(v.is_string() ? v.get<std::string>() : v.dump());
    std::string got = value.is_string() ? value.get<std::string>() : value.dump();
    return "must be one of: " + plugins::join(allowed) + "; got '" + got + "'" +
           plugins::did_you_mean(got, allowed);
  }
  if (value.is_number()) {
    double x = value.get<double>();
    if (!std::isfinite(x)) return "must be a finite number";
    if (spec.minimum && x < *spec.minimum)
      return "must be at least " + number_text(*spec.minimum) + ", got " + value.dump();
    if (spec.maximum && x > *spec.maximum)
      return "must be at most " + number_text(*spec.maximum) + ", got " + value.dump();
  }
  return "";
}

json parse_cli_value(const FieldSpec& spec, const std::string& text) {
  auto unquoted = [&]() {
    if (text.size() >= 2 && (text.front() == '"' || text.front() == '\'') && text.back() == text.front()) {
      return text.substr(1, text.size() - 2);
    }
    return text;
  };
  switch (spec.type) {
    case FieldType::kString:
      return unquoted();
    case FieldType::kBoolean:
      if (text == "true") return true;
      if (text == "false") return false;
      fail("'{}' is not a boolean: write true or false", text);
    case FieldType::kInteger: {
      int64_t v = 0;
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || ptr != text.data() + text.size()) fail("'{}' is not an integer", text);
      return v;
    }
    case FieldType::kNumber: {
      // An integer as written stays one (exactly, also past 2^53); anything else is a finite double.
      int64_t i = 0;
      auto [iptr, iec] = std::from_chars(text.data(), text.data() + text.size(), i);
      if (iec == std::errc() && iptr == text.data() + text.size()) return i;
      char* end = nullptr;
      double v = std::strtod(text.c_str(), &end);
      if (text.empty() || end != text.c_str() + text.size()) fail("'{}' is not a number", text);
      if (!std::isfinite(v)) fail("'{}' is not a finite number", text);
      return v;
    }
    case FieldType::kArray:
    case FieldType::kObject:
    case FieldType::kAny: {
      try {
        return json::parse(text);
      } catch (const std::exception&) {
        if (spec.type != FieldType::kAny) {
          fail("'{}' is not a valid {} (write it as JSON, e.g. [\"a\", \"b\"])", text,
               field_type_name(spec.type));
        }
        return unquoted();
      }
    }
  }
  return text;
}

std::string describe_constraints(const FieldSpec& spec) {
  std::string out = field_type_name(spec.type);
  if (spec.type == FieldType::kArray && spec.item_type != FieldType::kAny) {
    out += std::string(" of ") + field_type_name(spec.item_type);
  }
  if (spec.required) out += ", required";
  if (spec.default_value) out += ", default " + spec.default_value->dump();
  if (!spec.enum_values.empty()) {
    std::vector<std::string> allowed;
    for (const json& v : spec.enum_values) allowed.push_back(v.is_string() ? v.get<std::string>() : v.dump());
    out += ", one of: " + plugins::join(allowed, " | ");
  }
  if (spec.minimum) out += ", minimum " + number_text(*spec.minimum);
  if (spec.maximum) out += ", maximum " + number_text(*spec.maximum);
  return out;
}

}  // namespace engine::recipe
