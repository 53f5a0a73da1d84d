// Hub ids: `org/name`, `org/name@revision` (a branch, tag or 40-hex commit), as model.path, data.train,
// data.eval and `engine download` take them. A dataset source may end in `#N` (N samples, data_sources.hpp),
// which is not part of the id and is split off before parse_hub_id.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace engine::hub {

enum class RepoType { kModel, kDataset };

struct HubId {
  std::string repo;      // "org/name"
  std::string revision;  // "main" unless `@revision` was given
  RepoType type = RepoType::kModel;

  std::string str() const { return revision == "main" ? repo : repo + "@" + revision; }
};

// `org/name[@revision]` with org and name of letters, digits, '-', '_', '.' (not starting with '.' or '-',
// no ".."), as the Hub allows; anything else (an absolute path, ./x, a/b/c, a name with spaces) is not an id.
std::optional<HubId> parse_hub_id(std::string_view text, RepoType type = RepoType::kModel);

// "models" | "datasets" (the API's and the cache's plural).
const char* repo_type_plural(RepoType type) noexcept;

// A 40-hex git commit id.
bool is_commit_hash(std::string_view s) noexcept;

}  // namespace engine::hub
