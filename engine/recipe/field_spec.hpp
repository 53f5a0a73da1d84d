// FieldSpec: one key of a recipe section, with its type, default, allowed values and help. The engine's own
// keys and each plugin's options (its JSON schema: type, default, enum, minimum, maximum, description, items)
// become the same FieldSpecs, so checking, --set parsing and `engine plugins describe` share one code path.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace engine::recipe {

enum class FieldType { kString, kInteger, kNumber, kBoolean, kArray, kObject, kAny };

const char* field_type_name(FieldType t) noexcept;

struct FieldSpec {
  std::string name;
  FieldType type = FieldType::kAny;
  FieldType item_type = FieldType::kAny;  // arrays: the type of every item
  bool required = false;                  // no default: the recipe must set it
  std::optional<nlohmann::json> default_value;
  std::vector<nlohmann::json> enum_values;
  std::optional<double> minimum;
  std::optional<double> maximum;
  std::string description;
};

// Parses a plugin's options schema ({"type":"object","properties":{...},"required":[...]}).
// Throws engine::Error naming the plugin when the schema is malformed.
std::vector<FieldSpec> parse_schema(const std::string& schema_json, const std::string& plugin_name);

// "" when `value` satisfies the spec, else why not ("must be a number, got the string \"abc\"").
std::string check_value(const FieldSpec& spec, const nlohmann::json& value);

// Converts a --set value written on the command line to the spec's type ("0.1" -> 0.1 for a number,
// "true" -> true, "[1, 2]" -> an array, anything -> a string for strings). Throws engine::Error explaining.
nlohmann::json parse_cli_value(const FieldSpec& spec, const std::string& text);

// "number, default 0.001, minimum 0" for help texts.
std::string describe_constraints(const FieldSpec& spec);

}  // namespace engine::recipe
