#include "engine/session/trainable_coverage.hpp"

#include <algorithm>
#include <set>

#include "engine/core/error.hpp"
#include "engine/io/safetensors.hpp"

namespace engine::session {

namespace fs = std::filesystem;

namespace {

constexpr char kPeftPrefix[] = "base_model.model.";

// "a, b, c and 4 more"
std::string some_names(const std::set<std::string>& names) {
  std::string out;
  size_t n = 0;
  for (const std::string& s : names) {
    if (n == 5) {
      out += " and " + std::to_string(names.size() - n) + " more";
      break;
    }
    out += (n++ ? ", " : "") + s;
  }
  return out;
}

}  // namespace

std::vector<std::string> saved_weight_keys(const fs::path& dir) {
  std::vector<std::string> keys;
  std::vector<fs::path> files;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".safetensors" && e.path().filename() != "optimizer.safetensors" &&
        e.path().filename().string().rfind("optimizer-rank", 0) != 0)  // zero2's optimizer shares
      files.push_back(e.path());
  }
  if (ec) fail_with(ENG_ERR_IO, "cannot list the weights folder {}: {}", dir.string(), ec.message());
  std::sort(files.begin(), files.end());
  for (const fs::path& f : files) {
    io::SafetensorsFile file = io::SafetensorsFile::open(f);
    for (const io::SafetensorsTensor& t : file.tensors()) keys.emplace_back(t.name);
  }
  return keys;
}

void check_weights_cover(const std::vector<std::string>& trainable, const std::vector<std::string>& saved_keys,
                         const std::string& what) {
  std::set<std::string> missing(trainable.begin(), trainable.end());
  const std::set<std::string> wanted = missing;
  std::set<std::string> extra;
  for (const std::string& k : saved_keys) {
    std::string name = k;
    if (!wanted.count(name) && k.rfind(kPeftPrefix, 0) == 0) name = k.substr(sizeof(kPeftPrefix) - 1);
    if (wanted.count(name))
      missing.erase(name);
    else
      extra.insert(k);
  }
  if (missing.empty() && extra.empty()) return;
  std::string m = what + " does not hold exactly the run's trainable parameters:";
  if (!missing.empty())
    m += " it lacks " + std::to_string(missing.size()) + " trainable parameter(s) (" + some_names(missing) + ")";
  if (!extra.empty()) {
    m += std::string(missing.empty() ? "" : ";") + " it holds " + std::to_string(extra.size()) +
         " tensor(s) that are no trainable parameter of this run (" + some_names(extra) + ")";
  }
  m += ". A PEFT plugin must save every parameter it trains (its adapters and any base module it marked "
       "trainable, e.g. modules_to_save) under the parameter's name, and nothing else; a checkpoint must come "
       "from a run with the same [peft] section";
  fail_with(ENG_ERR_INVALID_ARGUMENT, "{}", m);
}

void check_optimizer_state_covers(const std::vector<std::string>& trainable, const std::vector<std::string>& keys,
                                  const std::string& what) {
  if (keys.empty()) return;
  std::set<std::string> missing(trainable.begin(), trainable.end());
  const std::set<std::string> names = missing;
  std::set<std::string> orphans;
  for (const std::string& k : keys) {
    // the longest trainable name P with k == P + "." + field
    bool found = false;
    for (size_t dot = k.rfind('.'); dot != std::string::npos && dot > 0; dot = k.rfind('.', dot - 1)) {
      auto it = names.find(k.substr(0, dot));
      if (it != names.end()) {
        missing.erase(*it);
        found = true;
        break;
      }
    }
    if (!found) orphans.insert(k);
  }
  if (missing.empty() && orphans.empty()) return;
  std::string m = what + " does not cover exactly the run's trainable parameters:";
  if (!missing.empty())
    m += " it has no state for " + std::to_string(missing.size()) + " trainable parameter(s) (" +
         some_names(missing) + ")";
  if (!orphans.empty()) {
    m += std::string(missing.empty() ? "" : ";") + " it has " + std::to_string(orphans.size()) +
         " entr(y/ies) of no trainable parameter (" + some_names(orphans) + ")";
  }
  m += ". Optimizer state keys are \"<parameter name>.<field>\"; resume with the recipe that wrote the "
       "checkpoint, or start over with --resume none";
  fail_with(ENG_ERR_INVALID_ARGUMENT, "{}", m);
}

}  // namespace engine::session
