#include "engine/recipe/field_spec.hpp"

#include <gtest/gtest.h>

#include "engine/core/error.hpp"

namespace engine::recipe {
namespace {

using nlohmann::json;

const char* kSchema = R"({"type": "object", "required": ["r"], "properties": {
  "r": {"type": "integer", "minimum": 1, "maximum": 256, "description": "rank"},
  "alpha": {"type": "number", "default": 16},
  "mode": {"type": "string", "enum": ["fast", "exact"], "default": "fast"},
  "targets": {"type": "array", "items": {"type": "string"}, "default": ["q_proj"]},
  "dropout": {"type": "boolean", "default": false}
}})";

TEST(FieldSpec, ParsesTypeDefaultEnumBoundsItemsAndRequired) {
  std::vector<FieldSpec> f = parse_schema(kSchema, "lora");
  ASSERT_EQ(f.size(), 5u);
  auto by = [&](const std::string& n) {
    return *std::find_if(f.begin(), f.end(), [&](auto& x) { return x.name == n; });
  };
  EXPECT_EQ(by("r").type, FieldType::kInteger);
  EXPECT_TRUE(by("r").required);
  EXPECT_EQ(*by("r").maximum, 256.0);
  EXPECT_EQ(by("r").description, "rank");
  EXPECT_EQ(*by("alpha").default_value, json(16));
  EXPECT_EQ(by("mode").enum_values.size(), 2u);
  EXPECT_EQ(by("targets").item_type, FieldType::kString);
}

TEST(FieldSpec, ChecksValues) {
  std::vector<FieldSpec> f = parse_schema(kSchema, "lora");
  auto by = [&](const std::string& n) {
    return *std::find_if(f.begin(), f.end(), [&](auto& x) { return x.name == n; });
  };
  EXPECT_EQ(check_value(by("r"), 8), "");
  EXPECT_NE(check_value(by("r"), 0).find("at least 1"), std::string::npos);
  EXPECT_NE(check_value(by("r"), 8.5).find("must be an integer"), std::string::npos);
  EXPECT_EQ(check_value(by("alpha"), 8), "");  // integers are numbers
  EXPECT_NE(check_value(by("alpha"), "8").find("remove the quotes"), std::string::npos);
  EXPECT_NE(check_value(by("mode"), "fsat").find("did you mean 'fast'"), std::string::npos);
  EXPECT_NE(check_value(by("targets"), json::array({"a", 1})).find("item 1"), std::string::npos);
}

TEST(FieldSpec, ParsesCommandLineValuesByType) {
  std::vector<FieldSpec> f = parse_schema(kSchema, "lora");
  auto by = [&](const std::string& n) {
    return *std::find_if(f.begin(), f.end(), [&](auto& x) { return x.name == n; });
  };
  EXPECT_EQ(parse_cli_value(by("r"), "16"), json(16));
  EXPECT_THROW(parse_cli_value(by("r"), "16x"), Error);
  EXPECT_EQ(parse_cli_value(by("alpha"), "0.5"), json(0.5));
  EXPECT_EQ(parse_cli_value(by("dropout"), "true"), json(true));
  EXPECT_THROW(parse_cli_value(by("dropout"), "yes"), Error);
  EXPECT_EQ(parse_cli_value(by("mode"), "\"exact\""), json("exact"));
  EXPECT_EQ(parse_cli_value(by("targets"), "[\"a\",\"b\"]"), json::array({"a", "b"}));
}

TEST(FieldSpec, MalformedSchemaNamesThePlugin) {
  try {
    parse_schema("{not json", "acme_dora");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("acme_dora"), std::string::npos);
  }
}

}  // namespace
}  // namespace engine::recipe
