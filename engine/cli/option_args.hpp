// Small helpers for subcommands that take `--name value` / `--name=value` options and flags (init-model,
// generate). Unknown options are usage errors naming the known ones.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/cli/command.hpp"

namespace engine::cli {

struct OptionArgs {
  std::map<std::string, std::string> values;  // "--model" -> "DIR"
  std::set<std::string> flags;                // "--chat"
  bool has(const std::string& name) const { return values.count(name) != 0 || flags.count(name) != 0; }
  // The value of a required option, or UsageError.
  const std::string& require(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback) const;
  int64_t get_int(const std::string& name, int64_t fallback) const;
  double get_double(const std::string& name, double fallback) const;
};

// Parses args against the options that take a value and the flags; UsageError for anything else.
OptionArgs parse_option_args(const std::vector<std::string>& args, const std::set<std::string>& with_value,
                             const std::set<std::string>& flags);

}  // namespace engine::cli
