// parse_strategy_options: the option check every parallel strategy here shares. The recipe's [parallel]
// section arrives as JSON (timeout_s is the engine's and reaches every strategy); a key the strategy does not
// know is refused with the list of those it does, never ignored. Built against the SDK only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/cpp/error.hpp"
#include "engine/cpp/json.hpp"

namespace engine::plugins_common {

inline sdk::Json parse_strategy_options(const std::string& strategy, const std::string& options_json,
                                        std::vector<std::string> known) {
  known.push_back("timeout_s");
  sdk::Json o = sdk::Json::parse(options_json.empty() ? "{}" : options_json);
  for (const auto& [key, value] : o.members()) {
    (void)value;
    bool ok = false;
    for (const std::string& k : known) ok = ok || k == key;
    if (ok) continue;
    std::string list;
    for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
    throw sdk::Error(strategy + ": unknown option '" + key + "'; the options are " + list);
  }
  return o;
}

// bucket_mb (ddp, zero2): gradients are summed in buckets of at most this many MiB; returns bytes.
inline int64_t bucket_bytes_option(const std::string& strategy, const sdk::Json& o) {
  const double mb = o.get("bucket_mb", 25.0);
  if (!(mb >= 0)) throw sdk::Error(strategy + ": bucket_mb must be >= 0");
  return static_cast<int64_t>(mb * 1024.0 * 1024.0);
}

}  // namespace engine::plugins_common
