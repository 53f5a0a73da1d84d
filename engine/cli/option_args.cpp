// Option parsing for init-model and generate (see option_args.hpp).
#include "engine/cli/option_args.hpp"

#include <charconv>
#include <cstdlib>

#include "engine/plugins/spelling.hpp"

namespace engine::cli {

const std::string& OptionArgs::require(const std::string& name) const {
  auto it = values.find(name);
  if (it == values.end()) throw UsageError("missing " + name);
  return it->second;
}

std::string OptionArgs::get(const std::string& name, const std::string& fallback) const {
  auto it = values.find(name);
  return it == values.end() ? fallback : it->second;
}

int64_t OptionArgs::get_int(const std::string& name, int64_t fallback) const {
  auto it = values.find(name);
  if (it == values.end()) return fallback;
  int64_t v = 0;
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size())
    throw UsageError(name + " needs an integer, got '" + s + "'");
  return v;
}

double OptionArgs::get_double(const std::string& name, double fallback) const {
  auto it = values.find(name);
  if (it == values.end()) return fallback;
  const std::string& s = it->second;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) throw UsageError(name + " needs a number, got '" + s + "'");
  return v;
}

OptionArgs parse_option_args(const std::vector<std::string>& args, const std::set<std::string>& with_value,
                             const std::set<std::string>& flags) {
  OptionArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i], value;
    bool inline_value = false;
    if (const size_t eq = name.find('='); name.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    if (with_value.count(name)) {
      if (!inline_value) {
        if (i + 1 >= args.size()) throw UsageError(name + " needs a value");
        value = args[++i];
      }
      out.values[name] = value;
    } else if (flags.count(name) && !inline_value) {
      out.flags.insert(name);
    } else {
      std::vector<std::string> known(with_value.begin(), with_value.end());
      known.insert(known.end(), flags.begin(), flags.end());
      throw UsageError("unknown argument '" + args[i] + "'" + plugins::did_you_mean(name, known) +
                       " (options: " + plugins::join(known) + ")");
    }
  }
  return out;
}

}  // namespace engine::cli
