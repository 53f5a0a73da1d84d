#include "engine/host/target_matcher.hpp"

#include <nlohmann/json.hpp>

#include "engine/core/error.hpp"

namespace engine::host {

namespace {

constexpr char kForms[] =
    "give \"all-linear\", a list of module names ([\"q_proj\", \"v_proj\"]) or a regular expression string";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

TargetMatcher TargetMatcher::parse(const std::string& spec_json) {
  const nlohmann::json spec = nlohmann::json::parse(spec_json, nullptr, false);
  if (spec.is_discarded()) fail("the target list '{}' is not JSON; {}", spec_json, kForms);
  TargetMatcher m;
  if (spec.is_string()) {
    const std::string s = spec.get<std::string>();
    if (s == "all-linear") {
      m.all_linear_ = true;
    } else if (s.empty()) {
      fail("the target list is an empty string; {}", kForms);
    } else {
      try {
        m.regex_ = std::regex(s, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        fail("the target list '{}' is not a valid regular expression ({}); {}", s, e.what(), kForms);
      }
      m.is_regex_ = true;
    }
    return m;
  }
  if (!spec.is_array()) fail("the target list {} is neither a string nor a list; {}", spec.dump(), kForms);
  for (const nlohmann::json& e : spec) {
    if (!e.is_string() || e.get<std::string>().empty())
      fail("the target list {} holds {}, not a module name; {}", spec.dump(), e.dump(), kForms);
    if (e.get<std::string>() == "all-linear")
      m.all_linear_ = true;
    else
      m.names_.push_back(e.get<std::string>());
  }
  if (m.all_linear_ && !m.names_.empty())
    fail("the target list {} mixes \"all-linear\" with names; give one or the other", spec.dump());
  if (!m.all_linear_ && m.names_.empty()) fail("the target list is an empty list; {}", kForms);
  return m;
}

bool TargetMatcher::matches(const std::string& module, bool block_linear) const {
  if (all_linear_) return block_linear;
  if (is_regex_) return std::regex_match(module, regex_);
  for (const std::string& n : names_) {
    if (module == n || (module.size() > n.size() && ends_with(module, n) && module[module.size() - n.size() - 1] == '.'))
      return true;
  }
  return false;
}

std::string TargetMatcher::module_of(const std::string& name) {
  for (const char* tail : {".weight", ".bias"}) {
    if (ends_with(name, tail) && name.size() > std::char_traits<char>::length(tail))
      return name.substr(0, name.size() - std::char_traits<char>::length(tail));
  }
  return name;
}

}  // namespace engine::host
