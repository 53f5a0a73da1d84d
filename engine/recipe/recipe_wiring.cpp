#include "engine/recipe/recipe_wiring.hpp"

#include <toml++/toml.h>

#include <sstream>

#include "engine/plugins/plugin_kind.hpp"
#include "engine/recipe/recipe_sections.hpp"

namespace engine::recipe {

using nlohmann::json;

namespace {

toml::array to_toml_array(const json& a);

void insert(toml::table& t, const std::string& key, const json& v);

toml::array to_toml_array(const json& a) {
  toml::array out;
  for (const json& v : a) {
    toml::table holder;
    insert(holder, "v", v);
    if (toml::node* n = holder.get("v")) out.push_back(*n);
  }
  return out;
}

void insert(toml::table& t, const std::string& key, const json& v) {
  if (v.is_string())
    t.insert_or_assign(key, v.get<std::string>());
  else if (v.is_boolean())
    t.insert_or_assign(key, v.get<bool>());
  else if (v.is_number_integer())
    t.insert_or_assign(key, v.get<int64_t>());
  else if (v.is_number())
    t.insert_or_assign(key, v.get<double>());
  else if (v.is_array())
    t.insert_or_assign(key, to_toml_array(v));
  else if (v.is_object()) {
    toml::table sub;
    for (const auto& [k, x] : v.items()) insert(sub, k, x);
    t.insert_or_assign(key, std::move(sub));
  }
}

}  // namespace

std::string describe_wiring(const Recipe& r) {
  std::ostringstream out;
  out << "recipe " << r.source.string() << "\n";
  auto slot = [&](const char* name, const PluginChoice& c) {
    out << "  " << name << std::string(11 - std::string(name).size(), ' ');
    if (!c.present()) {
      out << "-\n";
      return;
    }
    out << c.plugin;
    if (c.record) {
      out << " " << c.record->version << " (ABI " << plugins::abi_string(c.record->abi_version) << ", "
          << c.record->path.string() << ")";
    }
    out << "\n" << std::string(13, ' ') << "options " << c.options_json << "\n";
  };
  slot("model", r.model);
  slot("quantizer", r.quantizer);
  slot("peft", r.peft);
  slot("optimizer", r.optimizer);
  slot("parallel", r.parallel);
  for (const char* s : {"scheduler", "data", "train", "checkpoint", "log"}) {
    if (r.resolved.contains(s))
      out << "  " << s << std::string(11 - std::string(s).size(), ' ') << r.resolved[s].dump() << "\n";
  }
  return out.str();
}

std::string to_toml(const Recipe& r) {
  std::ostringstream out;
  out << "# The recipe as run (every default filled in, paths absolute), from " << r.source.string() << "\n";
  for (const SectionSpec& spec : recipe_sections()) {
    if (!r.resolved.contains(spec.name)) continue;
    toml::table body;
    for (const auto& [k, v] : r.resolved[spec.name].items()) insert(body, k, v);
    toml::table doc;
    doc.insert_or_assign(spec.name, std::move(body));
    out << "\n" << doc << "\n";
  }
  return out.str();
}

}  // namespace engine::recipe
