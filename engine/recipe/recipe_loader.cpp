#include "engine/recipe/recipe_loader.hpp"

#include <toml++/toml.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <climits>
#include <cstring>
#include <map>
#include <set>
#include <tuple>

#include "engine/hub/hub_id.hpp"
#include "engine/plugins/plugin_kind.hpp"
#include "engine/plugins/spelling.hpp"
#include "engine/recipe/recipe_sections.hpp"

namespace engine::recipe {

namespace fs = std::filesystem;
using nlohmann::json;
using plugins::did_you_mean;
using plugins::join;

namespace {

constexpr int kMaxIncludeDepth = 16;

// Splits a data source's "#N" sample count off ("a.jsonl#500" -> "a.jsonl", "#500").
std::pair<std::string, std::string> split_count(const std::string& text) {
  const size_t hash = text.rfind('#');
  if (hash == std::string::npos || hash + 1 == text.size() ||
      text.find_first_not_of("0123456789", hash + 1) != std::string::npos)
    return {text, ""};
  return {text.substr(0, hash), text.substr(hash)};
}

// A relative path made absolute against base_dir. A local path wins; a value that names nothing there and
// reads as org/name[@rev] stays as written: a Hub id. In a list, each string and each table's "source".
void resolve_paths(json& v, const fs::path& base_dir) {
  if (v.is_array()) {
    for (json& item : v) resolve_paths(item, base_dir);
    return;
  }
  if (v.is_object()) {
    if (v.contains("source")) resolve_paths(v["source"], base_dir);
    return;
  }
  if (!v.is_string() || v.get<std::string>().empty() || !fs::path(v.get<std::string>()).is_relative()) return;
  const std::string text = v.get<std::string>();
  std::error_code ec;
  const fs::path whole = fs::absolute(base_dir / text).lexically_normal();
  if (fs::exists(whole, ec)) {
    v = whole.string();
    return;
  }
  auto [path, count] = split_count(text);
  const fs::path local = fs::absolute(base_dir / path).lexically_normal();
  if (fs::exists(local, ec) || !hub::parse_hub_id(path)) v = local.string() + count;
}

// "" when `path` is a readable regular file, else what it is instead ("does not exist", "is a folder, expected
// a file", ...).
std::string why_not_a_file(const fs::path& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) return "does not exist";
  if (fs::is_directory(st)) return "is a folder, expected a file";
  if (!fs::is_regular_file(st)) return "is not a regular file";
  if (::access(path.c_str(), R_OK) != 0) return "cannot be read (" + std::string(std::strerror(errno)) + ")";
  return "";
}

// "" when `dir` is a folder this process can write into, or does not exist yet but can be created (its
// nearest existing parent is a writable folder); else the problem and the fix, for train.output_dir.
std::string why_not_writable_folder(const fs::path& dir) {
  if (dir.empty()) return "is empty; set it to the folder where checkpoints and metrics.jsonl go";
  std::error_code ec;
  fs::path probe = dir;
  while (!probe.empty() && !fs::exists(fs::status(probe, ec))) {
    if (probe == probe.parent_path()) break;
    probe = probe.parent_path();
  }
  if (probe.empty()) probe = ".";
  const fs::file_status st = fs::status(probe, ec);
  if (!fs::is_directory(st)) {
    return dir.string() + (probe == dir ? std::string(" is a file, expected a folder")
                                        : " cannot be created: " + probe.string() + " is a file") +
           "; choose another folder";
  }
  if (::access(probe.c_str(), W_OK | X_OK) != 0) {
    return dir.string() + (probe == dir ? std::string(" is not writable") : " cannot be created: " + probe.string() + " is not writable") +
           " (" + std::strerror(errno) + "); choose a folder you can write, or fix its permissions";
  }
  return "";
}

// One key's value and where it was set.
struct Entry {
  json value;
  std::string location;  // file:line:column or "--set a.b=c"
  fs::path base_dir;     // relative paths in this value are relative to this folder
};

struct Section {
  std::string location;  // where the [section] header is (the last file that opened it)
  std::map<std::string, Entry> entries;
};

std::string location_of(const toml::source_region& src, const fs::path& file) {
  std::string path = src.path ? std::string(*src.path) : file.string();
  return path + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
}

class RecipeReader {
 public:
  RecipeReader(const plugins::PluginRegistry& registry, bool data_must_exist)
      : registry_(registry), data_must_exist_(data_must_exist) {}

  Recipe load(const fs::path& path, const std::vector<std::string>& sets);

 private:
  void error(std::string location, std::string message) {
    diags_.push_back({std::move(location), std::move(message)});
  }
  // Where section.key was set (file:line:column or the --set), else where the section opened, else the recipe.
  std::string key_location(const std::string& section, const std::string& key) const {
    auto sec = sections_.find(section);
    if (sec == sections_.end()) return root_.string();
    auto e = sec->second.entries.find(key);
    return e != sec->second.entries.end() ? e->second.location : sec->second.location;
  }
  void read_file(const fs::path& path, std::vector<fs::path>& stack);
  std::optional<json> to_json(const toml::node& node, const fs::path& file);
  void apply_overrides(const std::vector<std::string>& sets, bool plugin_keys);
  void resolve_plugins();
  void check_sections();
  void build(Recipe& r);
  void check_combination(const Recipe& r);
  void check_paths(const Recipe& r);

  // The fields of a section: the engine's own, then the chosen plugin's options.
  std::vector<FieldSpec> fields_of(const SectionSpec& spec) const {
    std::vector<FieldSpec> out = spec.fields;
    auto it = plugin_fields_.find(spec.name);
    if (it != plugin_fields_.end()) {
      for (const FieldSpec& f : it->second) {
        if (std::none_of(out.begin(), out.end(), [&](const FieldSpec& g) { return g.name == f.name; })) {
          out.push_back(f);
        }
      }
    }
    return out;
  }

  const plugins::PluginRegistry& registry_;
  fs::path root_;
  bool data_must_exist_ = true;
  std::vector<Diagnostic> diags_;
  std::map<std::string, Section> sections_;
  std::map<std::string, const plugins::PluginRecord*> chosen_;
  std::map<std::string, std::vector<FieldSpec>> plugin_fields_;
  std::map<std::string, std::string> resolved_sections_;  // names whose plugin resolved
};

std::optional<json> RecipeReader::to_json(const toml::node& node, const fs::path& file) {
  if (auto v = node.as_string()) return json(v->get());
  if (auto v = node.as_integer()) return json(v->get());
  if (auto v = node.as_floating_point()) return json(v->get());
  if (auto v = node.as_boolean()) return json(v->get());
  if (auto a = node.as_array()) {
    json out = json::array();
    for (const toml::node& item : *a) {
      auto j = to_json(item, file);
      if (!j) return std::nullopt;
      out.push_back(*j);
    }
    return out;
  }
  if (auto t = node.as_table()) {
    json out = json::object();
    for (auto&& [k, v] : *t) {
      auto j = to_json(v, file);
      if (!j) return std::nullopt;
      out[std::string(k.str())] = *j;
    }
    return out;
  }
  error(location_of(node.source(), file),
        "dates and times are not recipe values; write a string or a number");
  return std::nullopt;
}

void RecipeReader::read_file(const fs::path& path, std::vector<fs::path>& stack) {
  std::error_code ec;
  if (std::string why = why_not_a_file(path); !why.empty()) {
    error(stack.empty() ? path.string() : stack.back().string(), "recipe file " + path.string() + " " + why);
    return;
  }
  fs::path canonical = fs::weakly_canonical(path, ec);
  if (std::find(stack.begin(), stack.end(), canonical) != stack.end()) {
    error(stack.back().string(),
          "include cycle: " + path.string() + " includes itself (directly or through others)");
    return;
  }
  if (stack.size() >= kMaxIncludeDepth) {
    error(path.string(), "includes nested deeper than " + std::to_string(kMaxIncludeDepth));
    return;
  }
  toml::table table;
  try {
    table = toml::parse_file(path.string());
  } catch (const toml::parse_error& e) {
    error(location_of(e.source(), path), "TOML syntax error: " + std::string(e.description()));
    return;
  }
  stack.push_back(canonical);

  // include = "base.toml" or ["a.toml", "b.toml"], relative to this file; later files and this one override.
  if (const toml::node* inc = table.get("include")) {
    std::vector<std::string> files;
    if (auto s = inc->as_string()) {
      files.push_back(s->get());
    } else if (auto a = inc->as_array(); a && a->is_homogeneous<std::string>()) {
      for (const toml::node& n : *a) files.push_back(n.as_string()->get());
    } else {
      error(location_of(inc->source(), path), "include must be a file name or an array of file names");
    }
    for (const std::string& f : files) {
      fs::path p = fs::path(f).is_absolute() ? fs::path(f) : path.parent_path() / f;
      read_file(p, stack);
    }
  }

  std::vector<std::string> section_names;
  for (const SectionSpec& s : recipe_sections()) section_names.push_back(s.name);
  for (auto&& [key, node] : table) {
    std::string name(key.str());
    if (name == "include") continue;
    const toml::table* body = node.as_table();
    if (body == nullptr) {
      error(location_of(key.source(), path), "key '" + name +
                                                 "' is outside any section; recipe keys belong in a "
                                                 "section such as [train] (sections: " +
                                                 join(section_names) + ")");
      continue;
    }
    if (find_section(name) == nullptr) {
      error(location_of(key.source(), path), "unknown section [" + name + "]" +
                                                 did_you_mean(name, section_names) +
                                                 " (sections: " + join(section_names) + ")");
      continue;
    }
    Section& section = sections_[name];
    section.location = location_of(node.source(), path);
    for (auto&& [k, v] : *body) {
      if (auto j = to_json(v, path)) {
        section.entries[std::string(k.str())] = Entry{*j, location_of(k.source(), path), path.parent_path()};
      }
    }
  }
  stack.pop_back();
}

void RecipeReader::apply_overrides(const std::vector<std::string>& sets, bool plugin_keys) {
  std::vector<std::string> section_names;
  for (const SectionSpec& s : recipe_sections()) section_names.push_back(s.name);
  for (const std::string& set : sets) {
    const std::string where = "--set " + set;
    size_t eq = set.find('=');
    size_t dot = set.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq || dot == 0 || dot + 1 == eq) {
      if (plugin_keys) error(where, "expected section.key=value, e.g. --set train.max_steps=10");
      continue;
    }
    std::string section = set.substr(0, dot), key = set.substr(dot + 1, eq - dot - 1),
                text = set.substr(eq + 1);
    if ((key == "plugin") != plugin_keys) continue;
    const SectionSpec* spec = find_section(section);
    if (spec == nullptr) {
      if (plugin_keys || key != "plugin") {
        error(where, "unknown section [" + section + "]" + did_you_mean(section, section_names) +
                         " (sections: " + join(section_names) + ")");
      }
      continue;
    }
    std::vector<FieldSpec> fields = fields_of(*spec);
    auto f = std::find_if(fields.begin(), fields.end(), [&](const FieldSpec& x) { return x.name == key; });
    if (f == fields.end()) {
      std::vector<std::string> known;
      for (const FieldSpec& x : fields) known.push_back(x.name);
      std::string why = sections_.count(section) && spec->plugin_kind && !resolved_sections_.count(section)
                            ? " (the section's plugin did not resolve, so its options are unknown)"
                            : "";
      error(where, "unknown key '" + key + "' in [" + section + "]" + did_you_mean(key, known) +
                       " (known keys: " + join(known) + ")" + why);
      continue;
    }
    try {
      Section& s = sections_[section];
      if (s.location.empty()) s.location = where;
      s.entries[key] = Entry{parse_cli_value(*f, text), where, fs::current_path()};
    } catch (const Error& e) {
      error(where, section + "." + key + " (" + field_type_name(f->type) + "): " + e.what());
    }
  }
}

void RecipeReader::resolve_plugins() {
  for (const SectionSpec& spec : recipe_sections()) {
    if (!spec.plugin_kind) continue;
    auto it = sections_.find(spec.name);
    if (it == sections_.end()) continue;
    const Section& section = it->second;
    const std::string kind = plugins::kind_name(*spec.plugin_kind);
    auto p = section.entries.find("plugin");
    if (p == section.entries.end()) {
      std::vector<std::string> available = registry_.names(*spec.plugin_kind);
      error(section.location,
            "[" + spec.name + "] needs plugin = \"<name>\" (available " + kind +
                " plugins: " + (available.empty() ? std::string("none installed") : join(available)) + ")");
      continue;
    }
    if (!p->second.value.is_string()) {
      error(p->second.location, "[" + spec.name + "] plugin must be a string (the plugin's name)");
      continue;
    }
    std::string name = p->second.value.get<std::string>();
    std::string why = registry_.why_missing(*spec.plugin_kind, name);
    if (!why.empty()) {
      error(p->second.location, why);
      continue;
    }
    const plugins::PluginRecord* rec = registry_.find(*spec.plugin_kind, name);
    try {
      plugin_fields_[spec.name] = parse_schema(rec->options_schema_json, name);
    } catch (const Error& e) {
      error(p->second.location, e.what());
      continue;
    }
    chosen_[spec.name] = rec;
    resolved_sections_[spec.name] = name;
  }
}

void RecipeReader::check_sections() {
  for (const SectionSpec& spec : recipe_sections()) {
    auto it = sections_.find(spec.name);
    if (it == sections_.end()) {
      if (spec.required) {
        error(root_.string(), "missing section [" + spec.name +
                                  "]; every recipe needs [model], [optimizer], [data] "
                                  "and [train] (see the recipe reference in README.md)");
      }
      continue;
    }
    const Section& section = it->second;
    const bool options_known = !spec.plugin_kind || resolved_sections_.count(spec.name);
    std::vector<FieldSpec> fields = fields_of(spec);
    std::vector<std::string> known;
    for (const FieldSpec& f : fields) known.push_back(f.name);
    for (const auto& [key, entry] : section.entries) {
      const std::string& name = key;  // clang 14 (the fuzz build) cannot capture a structured binding
      auto f = std::find_if(fields.begin(), fields.end(), [&](const FieldSpec& x) { return x.name == name; });
      if (f == fields.end()) {
        if (!options_known) continue;  // the plugin error already explains; its options cannot be checked
        std::string owner = spec.plugin_kind ? std::string(" of the engine and of ") +
                                                   plugins::kind_name(*spec.plugin_kind) + " plugin '" +
                                                   resolved_sections_[spec.name] + "'"
                                             : "";
        error(entry.location, "unknown key '" + key + "' in [" + spec.name + "]" + did_you_mean(key, known) +
                                  " (known keys" + owner + ": " + join(known) + ")");
        continue;
      }
      if (std::string why = check_value(*f, entry.value); !why.empty()) {
        error(entry.location, spec.name + "." + key + " " + why);
      }
      // A key both the engine and the plugin declare must satisfy both.
      auto pf = plugin_fields_.find(spec.name);
      if (pf != plugin_fields_.end()) {
        for (const FieldSpec& g : pf->second) {
          if (g.name == key && &*f != &g) {
            if (std::string why = check_value(g, entry.value);
                !why.empty() && check_value(*f, entry.value).empty()) {
              error(entry.location, spec.name + "." + key + " " + why + " (required by plugin '" +
                                        resolved_sections_[spec.name] + "')");
            }
          }
        }
      }
    }
    for (const FieldSpec& f : fields) {
      if (f.required && !section.entries.count(f.name) && (f.name != "plugin")) {
        if (!options_known && f.name != "path" && f.name != "lr") continue;
        error(section.location, "[" + spec.name + "] needs " + f.name + " (" + describe_constraints(f) +
                                    (f.description.empty() ? "" : ": " + f.description) + ")");
      }
    }
  }
}

void RecipeReader::build(Recipe& r) {
  json resolved = json::object();
  for (const SectionSpec& spec : recipe_sections()) {
    auto it = sections_.find(spec.name);
    if (it == sections_.end() && !(spec.required || !spec.plugin_kind))
      continue;  // absent optional plugin slot
    json obj = json::object();
    for (const FieldSpec& f : fields_of(spec)) {
      if (f.default_value) obj[f.name] = *f.default_value;
    }
    if (it != sections_.end()) {
      for (const auto& [key, entry] : it->second.entries) {
        json v = entry.value;
        bool is_path = std::find(spec.path_keys.begin(), spec.path_keys.end(), key) != spec.path_keys.end();
        if (is_path) resolve_paths(v, entry.base_dir);
        obj[key] = v;
      }
    }
    resolved[spec.name] = obj;
  }
  r.resolved = resolved;

  auto get = [&](const char* section, const char* key, json fallback) -> json {
    if (!resolved.contains(section) || !resolved[section].contains(key)) return fallback;
    const json& v = resolved[section][key];
    if (fallback.is_number() && !v.is_number()) return fallback;  // already reported
    // An integer field given a non-integer number (1.5, nan) is reported too; converting it would be undefined.
    if (fallback.is_number_integer() && !v.is_number_integer()) return fallback;
    if (fallback.is_string() && !v.is_string()) return fallback;
    if (fallback.is_boolean() && !v.is_boolean()) return fallback;
    return v;
  };
  // data.train / data.eval: a string, or a list of strings and {source, count | weight} tables.
  auto data_sources = [&](const char* key) {
    std::vector<DataSourceSpec> out;
    if (!resolved.contains("data") || !resolved["data"].contains(key)) return out;
    const json& v = resolved["data"][key];
    const std::string where = sections_["data"].entries.count(key) ? sections_["data"].entries[key].location
                                                                   : sections_["data"].location;
    const std::string name = std::string("data.") + key;
    auto one = [&](const json& item) {
      DataSourceSpec s;
      json source = item;
      if (item.is_object()) {
        for (const auto& [k, _] : item.items()) {
          if (k != "source" && k != "count" && k != "weight")
            error(where, name + ": unknown key '" + k + "' in a source table (known: source, count, weight)");
        }
        source = item.value("source", json());
        if (item.contains("count")) {
          if (!item["count"].is_number_integer() || item["count"].get<int64_t>() <= 0)
            error(where, name + ": count must be a positive integer");
          else
            s.count = item["count"].get<int64_t>();
        }
        if (item.contains("weight")) {
          if (!item["weight"].is_number() || !(item["weight"].get<double>() > 0) ||
              !std::isfinite(item["weight"].get<double>()))  // nan and inf are TOML numbers too
            error(where, name + ": weight must be a positive finite number");
          else
            s.weight = item["weight"].get<double>();
        }
        if (s.count > 0 && s.weight > 0) error(where, name + ": give a source either count or weight, not both");
      }
      if (!source.is_string() || source.get<std::string>().empty()) {
        error(where, name + " entries are a path or Hub id (\"org/name#500\"), or a table {source = \"...\", "
                            "count = N} or {source = \"...\", weight = w}");
        return;
      }
      s.text = source.get<std::string>();
      std::error_code ec;
      std::string path = s.text;
      if (!fs::exists(path, ec)) {
        auto [p, count] = split_count(path);
        if (!count.empty()) {
          if (s.count > 0 || s.weight > 0) error(where, name + ": " + s.text + " has a #count and a table count/weight");
          // split_count leaves only digits after '#'; more than 12 of them is past any dataset's rows.
          s.count = count.size() > 13 ? -1 : std::stoll(count.substr(1));
          if (s.count <= 0)
            error(where, name + ": " + s.text + ": the #count must be a number of rows from 1 to 999999999999");
          path = p;
        }
      }
      if (fs::path(path).is_relative() && hub::parse_hub_id(path)) s.hub_id = path;
      else s.path = path;
      out.push_back(s);
    };
    if (v.is_string()) {
      if (!v.get<std::string>().empty()) one(v);
    } else if (v.is_array()) {
      if (v.empty()) error(where, name + " is an empty list; name at least one source");
      for (const json& item : v) one(item);
    } else {
      error(where, name + " must be a path or Hub id, or a list of them (got " + v.dump() + ")");
    }
    return out;
  };
  auto choice = [&](const char* section, PluginChoice& c) {
    if (!resolved.contains(section)) return;
    c.plugin = get(section, "plugin", "").get<std::string>();
    json options = resolved[section];
    options.erase("plugin");
    c.options_json = options.dump();
    auto ch = chosen_.find(section);
    c.record = ch == chosen_.end() ? nullptr : ch->second;
  };
  choice("model", r.model);
  r.model.path = get("model", "path", "").get<std::string>();
  if (r.model.path.is_relative() && hub::parse_hub_id(r.model.path.string())) r.model.hub_id = r.model.path.string();
  r.model.dtype = get("model", "dtype", "bf16").get<std::string>();
  r.model.init_preset = get("model", "init_preset", "").get<std::string>();
  r.model.init_std = get("model", "init_std", 0.0).get<double>();
  choice("quantizer", r.quantizer);
  choice("peft", r.peft);
  choice("optimizer", r.optimizer);
  r.optimizer.lr = get("optimizer", "lr", 0.0).get<double>();
  r.optimizer.weight_decay = get("optimizer", "weight_decay", 0.0).get<double>();
  choice("parallel", r.parallel);
  r.parallel.timeout_s = get("parallel", "timeout_s", 600.0).get<double>();
  r.scheduler.kind = get("scheduler", "kind", "constant").get<std::string>();
  r.scheduler.warmup_steps = get("scheduler", "warmup_steps", 0).get<int64_t>();
  r.scheduler.warmup_ratio = get("scheduler", "warmup_ratio", 0.0).get<double>();
  r.scheduler.min_lr = get("scheduler", "min_lr", 0.0).get<double>();
  r.data.train = data_sources("train");
  r.data.eval = data_sources("eval");
  r.data.format = get("data", "format", "auto").get<std::string>();
  r.data.max_seq_len = get("data", "max_seq_len", 2048).get<int64_t>();
  r.data.packing = get("data", "packing", false).get<bool>();
  r.data.chat_template = get("data", "chat_template", "auto").get<std::string>();
  r.data.system_prompt = get("data", "system_prompt", "").get<std::string>();
  r.data.train_on_prompt = get("data", "train_on_prompt", false).get<bool>();
  r.data.truncation = get("data", "truncation", "truncate").get<std::string>();
  r.data.on_error = get("data", "on_error", "fail").get<std::string>();
  r.train.output_dir = get("train", "output_dir", "").get<std::string>();
  r.train.micro_batch_size = get("train", "micro_batch_size", 1).get<int64_t>();
  r.train.grad_accum = get("train", "grad_accum", 1).get<int64_t>();
  r.train.max_steps = get("train", "max_steps", 0).get<int64_t>();
  r.train.epochs = get("train", "epochs", 1).get<int64_t>();
  r.train.grad_clip = get("train", "grad_clip", 1.0).get<double>();
  r.train.seed = get("train", "seed", 42).get<int64_t>();
  r.train.device = get("train", "device", "auto").get<std::string>();
  {
    const json ac = resolved.contains("train") && resolved["train"].contains("activation_checkpointing")
                        ? resolved["train"]["activation_checkpointing"]
                        : json(false);
    if (ac.is_boolean()) {
      r.train.checkpoint_blocks = ac.get<bool>() ? -1 : 0;
    } else if (ac.is_number_integer() && ac.get<int64_t>() >= 0) {
      r.train.checkpoint_blocks = ac.get<int64_t>();
    } else if (ac.is_string() && ac.get<std::string>() == "auto") {
      r.train.checkpoint_auto = true;
    } else {
      error(key_location("train", "activation_checkpointing"), "train.activation_checkpointing must be true, false, a number of blocks (0 or more) or "
                 "\"auto\", got " + ac.dump());
    }
    r.train.activation_checkpointing = r.train.checkpoint_blocks != 0 || r.train.checkpoint_auto;
  }
  r.train.offload_activations = get("train", "offload_activations", false).get<bool>();
  if (r.train.offload_activations) {
    const std::string loc = key_location("train", "offload_activations");
    if (!r.train.activation_checkpointing)
      error(loc, "train.offload_activations = true moves the inputs that checkpointed blocks keep to host "
                 "memory, but train.activation_checkpointing = false checkpoints no block: set "
                 "activation_checkpointing = true, a number of blocks or \"auto\", or offload_activations = false");
    else if (r.train.device == "cpu")
      error(loc, "train.offload_activations = true with train.device = \"cpu\": offload moves activations "
                 "from GPU memory to host memory, and on the CPU both are the same memory; set "
                 "offload_activations = false, or train on \"cuda\"");
  }
  r.train.offload_kept_blocks = get("train", "offload_kept_blocks", 0).get<int64_t>();
  if (r.train.offload_kept_blocks > 0) {
    const std::string loc = key_location("train", "offload_kept_blocks");
    if (r.train.checkpoint_blocks < 0)
      error(loc, "train.offload_kept_blocks moves the activations of blocks that keep them to host memory, but "
                 "train.activation_checkpointing = true recomputes every block; set activation_checkpointing to a "
                 "number of blocks, \"auto\" or false, or remove offload_kept_blocks");
    else if (r.train.device == "cpu")
      error(loc, "train.offload_kept_blocks with train.device = \"cpu\": offload moves activations from GPU "
                 "memory to host memory, and on the CPU both are the same memory; remove the key, or train on "
                 "\"cuda\"");
  }
  r.train.recompute_cheap_ops = get("train", "recompute_cheap_ops", false).get<bool>();
  if (r.train.recompute_cheap_ops && r.train.checkpoint_blocks < 0)
    error(key_location("train", "recompute_cheap_ops"),
          "train.recompute_cheap_ops = true acts on blocks that keep their activations, but "
          "train.activation_checkpointing = true recomputes every block; set activation_checkpointing to a "
          "number of blocks, \"auto\" or false, or recompute_cheap_ops = false");
  r.train.keep_attention = get("train", "keep_attention", false).get<bool>();
  if (r.train.keep_attention && !r.train.activation_checkpointing)
    error(key_location("train", "keep_attention"),
          "train.keep_attention = true keeps the attention results of checkpointed blocks for their replay, but "
          "train.activation_checkpointing = false checkpoints no block (every attention keeps its results "
          "anyway): set activation_checkpointing = true, a number of blocks or \"auto\", or remove keep_attention");
  r.train.deterministic = get("train", "deterministic", true).get<bool>();
  if (!r.train.deterministic && r.train.device == "cpu")
    error(key_location("train", "deterministic"), "train.deterministic = false with train.device = \"cpu\": only CUDA kernels have a "
               "non-deterministic variant (every CPU kernel is deterministic); remove the key, or train on \"cuda\"");
  r.train.max_memory_gib = get("train", "max_memory", 0.0).get<double>();
  r.train.dtype = get("train", "dtype", "fp32").get<std::string>();
  r.train.eval_every = get("train", "eval_every", 0).get<int64_t>();
  r.train.max_nonfinite_steps = get("train", "max_nonfinite_steps", 10).get<int64_t>();
  r.checkpoint.save_every = get("checkpoint", "save_every", 0).get<int64_t>();
  r.checkpoint.keep_last = get("checkpoint", "keep_last", 0).get<int64_t>();
  r.log.every = get("log", "every", 1).get<int64_t>();
  r.log.tensorboard = get("log", "tensorboard", false).get<bool>();
}

void RecipeReader::check_combination(const Recipe& r) {
  auto where = [&](const char* section) {
    auto it = sections_.find(section);
    if (it == sections_.end()) return root_.string();
    auto p = it->second.entries.find("plugin");
    return p != it->second.entries.end() ? p->second.location : it->second.location;
  };
  const plugins::PluginRecord* quant = r.quantizer.record;
  const plugins::PluginRecord* peft = r.peft.record;
  const plugins::PluginRecord* opt = r.optimizer.record;
  const plugins::PluginRecord* par = r.parallel.record;

  if (quant && quant->has(ENG_QUANT_CAP_FROZEN_ONLY) && !r.peft.present()) {
    error(where("quantizer"), "quantizer '" + quant->name +
                                  "' stores the weights it takes frozen (ENG_QUANT_CAP_FROZEN_ONLY), so they "
                                  "cannot receive gradients; a recipe without [peft] means full fine-tuning, "
                                  "which needs gradients on "
                                  "those weights. Add a [peft] section (e.g. plugin = \"lora\") to train "
                                  "adapters on the quantized model, "
                                  "or remove [quantizer] to fine-tune all weights");
  }
  if (quant && peft && !peft->has(ENG_PEFT_CAP_QUANTIZED_BASE)) {
    error(where("peft"), "PEFT method '" + peft->name +
                             "' does not support a quantized base weight (it lacks "
                             "ENG_PEFT_CAP_QUANTIZED_BASE), but the recipe quantizes with '" +
                             quant->name +
                             "'; remove [quantizer] or choose a PEFT method that works on quantized weights");
  }
  if (par && par->has(ENG_PAR_CAP_SHARDS_PARAMS) && opt && !opt->has(ENG_OPT_CAP_SHARDED)) {
    error(where("optimizer"),
          "parallel strategy '" + par->name +
              "' shards parameters across ranks "
              "(ENG_PAR_CAP_SHARDS_PARAMS), but optimizer '" +
              opt->name +
              "' cannot step local "
              "shards (it lacks ENG_OPT_CAP_SHARDED); choose a sharding-capable optimizer or a "
              "non-sharding strategy such as ddp");
  }
  if (par && quant && !par->has(ENG_PAR_CAP_QUANTIZED)) {
    error(where("parallel"), "parallel strategy '" + par->name +
                                 "' cannot handle quantized base weights (it lacks "
                                 "ENG_PAR_CAP_QUANTIZED), but the recipe quantizes with '" +
                                 quant->name + "'");
  }

  // Devices: every chosen plugin must run on train.device; with auto, on at least one common device.
  struct Slot {
    const char* section;
    const plugins::PluginRecord* rec;
  };
  const Slot slots[] = {
      {"model", r.model.record}, {"quantizer", quant}, {"peft", peft}, {"optimizer", opt}, {"parallel", par}};
  uint64_t common = ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA;
  for (const Slot& s : slots) {
    if (!s.rec) continue;
    std::vector<std::string> has;
    if (s.rec->has(ENG_CAP_DEVICE_CPU)) has.push_back("cpu");
    if (s.rec->has(ENG_CAP_DEVICE_CUDA)) has.push_back("cuda");
    std::string runs_on = has.empty()
                              ? "no device (it declares neither ENG_CAP_DEVICE_CPU nor ENG_CAP_DEVICE_CUDA)"
                              : join(has, " and ");
    uint64_t need = r.train.device == "cpu"    ? ENG_CAP_DEVICE_CPU
                    : r.train.device == "cuda" ? ENG_CAP_DEVICE_CUDA
                                               : 0;
    if (need != 0 && !s.rec->has(need)) {
      error(where(s.section), std::string(plugins::kind_name(s.rec->kind)) + " plugin '" + s.rec->name +
                                  "' does not run on " + r.train.device + " (it runs on " + runs_on +
                                  "); set train.device to a device it supports or choose another plugin");
    }
    common &= s.rec->capabilities;
  }
  if (r.train.device == "auto" && (common & (ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA)) == 0) {
    std::vector<std::string> parts;
    for (const Slot& s : slots) {
      if (!s.rec) continue;
      std::vector<std::string> has;
      if (s.rec->has(ENG_CAP_DEVICE_CPU)) has.push_back("cpu");
      if (s.rec->has(ENG_CAP_DEVICE_CUDA)) has.push_back("cuda");
      parts.push_back(s.rec->name + ": " + (has.empty() ? "none" : join(has, "+")));
    }
    error(root_.string(), "the chosen plugins share no device (" + join(parts) +
                              "); choose plugins that run on "
                              "a common device");
  }

  if (r.scheduler.warmup_steps > 0 && r.scheduler.warmup_ratio > 0) {
    error(sections_["scheduler"].location,
          "set either scheduler.warmup_steps or scheduler.warmup_ratio, not both");
  }
  if (r.scheduler.min_lr > r.optimizer.lr) {
    error(sections_["scheduler"].location, "scheduler.min_lr (" + json(r.scheduler.min_lr).dump() +
                                               ") is above optimizer.lr (" + json(r.optimizer.lr).dump() +
                                               ")");
  }
  if (r.train.eval_every > 0 && r.data.eval.empty()) {
    error(sections_["train"].location,
          "train.eval_every is " + std::to_string(r.train.eval_every) +
              " but [data] has no eval set; set data.eval or train.eval_every = 0");
  }
}

void RecipeReader::check_paths(const Recipe& r) {
  static const std::string kRelativePaths =
      "relative paths are relative to the recipe file that sets them (--set: to the current directory)";
  std::error_code ec;
  if (!r.model.path.empty() && r.model.hub_id.empty() && !fs::is_directory(r.model.path, ec) &&
      r.model.init_preset.empty()) {
    error(key_location("model", "path"), "model.path " + r.model.path.string() +
                                               " is not a folder; it must be a Hugging Face model folder "
                                               "(config.json, *.safetensors) or a Hub id org/name[@revision]; " +
                                               kRelativePaths);
  }
  for (const char* key : {"train", "eval"}) {
    if (!data_must_exist_) break;
    for (const DataSourceSpec& s : std::string(key) == "train" ? r.data.train : r.data.eval) {
      if (s.hub_id.empty() && !fs::exists(s.path, ec)) {
        error(key_location("data", key), std::string("data.") + key + " " + s.path.string() +
                                               " does not exist; " + kRelativePaths +
                                               " (a Hub dataset is named org/name[@revision])");
      }
    }
  }
  if (std::string why = why_not_writable_folder(r.train.output_dir); !why.empty())
    error(key_location("train", "output_dir"), "train.output_dir " + why);
}

// Orders diagnostics as a reader meets them: by file, then line, then column; --set arguments last, in order.
void sort_diagnostics(std::vector<Diagnostic>& ds) {
  struct Key {
    bool from_cli;
    std::string file;
    long line, column;
  };
  auto key = [](const Diagnostic& d) {
    const std::string& loc = d.location;
    if (loc.rfind("--set ", 0) == 0) return Key{true, "", 0, 0};
    size_t c2 = loc.rfind(':');
    size_t c1 = c2 == std::string::npos || c2 == 0 ? std::string::npos : loc.rfind(':', c2 - 1);
    auto digits = [](const std::string& s) {
      return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
    };
    if (c1 != std::string::npos && digits(loc.substr(c1 + 1, c2 - c1 - 1)) && digits(loc.substr(c2 + 1))) {
      auto number = [](const std::string& s) {  // digits only; a huge one sorts last instead of throwing
        long v = 0;
        if (std::from_chars(s.data(), s.data() + s.size(), v).ec != std::errc()) v = LONG_MAX;
        return v;
      };
      return Key{false, loc.substr(0, c1), number(loc.substr(c1 + 1, c2 - c1 - 1)), number(loc.substr(c2 + 1))};
    }
    return Key{false, loc, 0, 0};
  };
  std::stable_sort(ds.begin(), ds.end(), [&](const Diagnostic& a, const Diagnostic& b) {
    Key x = key(a), y = key(b);
    return std::tie(x.from_cli, x.file, x.line, x.column) < std::tie(y.from_cli, y.file, y.line, y.column);
  });
}

Recipe RecipeReader::load(const fs::path& path, const std::vector<std::string>& sets) {
  root_ = path;
  std::vector<fs::path> stack;
  read_file(path, stack);
  if (!diags_.empty() && sections_.empty()) throw RecipeError(diags_);
  apply_overrides(sets, /*plugin_keys=*/true);
  resolve_plugins();
  apply_overrides(sets, /*plugin_keys=*/false);
  check_sections();
  Recipe r;
  r.source = fs::absolute(path).lexically_normal();
  build(r);
  check_combination(r);
  check_paths(r);
  sort_diagnostics(diags_);
  if (!diags_.empty()) throw RecipeError(diags_);
  return r;
}

}  // namespace

Recipe load_recipe(const fs::path& path, const std::vector<std::string>& sets,
                   const plugins::PluginRegistry& registry, bool data_must_exist) {
  RecipeReader reader(registry, data_must_exist);
  return reader.load(path, sets);
}

}  // namespace engine::recipe
