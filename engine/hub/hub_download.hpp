// Downloads from the Hugging Face Hub (or a mirror at HF_ENDPOINT) into the cache of hub_cache.hpp, the way
// huggingface_hub's snapshot_download does:
//   GET  {endpoint}/api/{models|datasets}/{id}/revision/{revision}   the commit sha and the file list
//   HEAD {endpoint}/[datasets/]{id}/resolve/{commit}/{file}          X-Repo-Commit, X-Linked-Etag or ETag,
//                                                                    X-Linked-Size or Content-Length, and a
//                                                                    Location when the bytes live elsewhere
//   GET  the same URL (redirects followed)                           the bytes, into blobs/<etag>.incomplete,
//                                                                    resumed with Range from its size
// An LFS file's ETag is its SHA-256, which is checked before the blob is renamed to blobs/<etag> and linked
// into snapshots/<commit>/. A file already in the snapshot is not fetched again. The token is HF_TOKEN, else
// the file huggingface_hub's login writes (HF_TOKEN_PATH, else HF_HOME/token); it is sent only to the
// endpoint's host (curl drops it on a redirect to another host) and never logged.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/hub/hub_id.hpp"

namespace engine::hub {

// Thrown when the Hub cannot be reached at all (no connection, DNS, timeout): the caller may fall back to
// the cache. Other failures (401/403/404, a corrupted download) are engine::Error.
struct HubUnreachable : Error {
  using Error::Error;
};

struct DownloadOptions {
  std::vector<std::string> include;  // fnmatch globs on the repo's file names ('*' crosses '/'); empty: all
  std::string endpoint;              // empty: HF_ENDPOINT, else https://huggingface.co
  bool progress = true;              // a progress line per file on stderr
  int retries = 3;                   // a cut transfer is resumed this many times
};

struct DownloadResult {
  std::filesystem::path snapshot;  // <cache>/<repo folder>/snapshots/<commit>
  std::string commit;
  std::vector<std::string> files;  // the repo's files that matched `include`, all now in the snapshot
  size_t fetched = 0;              // how many of them were downloaded now
};

DownloadResult download_snapshot(const HubId& id, const DownloadOptions& options);

// The commit `id` names on the Hub and every file of the repo at that commit (one API call).
struct RepoListing {
  std::string commit;
  std::vector<std::string> files;
};
RepoListing list_repo_files(const HubId& id, const std::string& endpoint = "");

// HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE) is 1, true, yes or on.
bool hub_offline_from_env();

// HF_ENDPOINT without a trailing '/', else https://huggingface.co.
std::string hub_endpoint();

// fnmatch without FNM_PATHNAME, as huggingface_hub's allow_patterns.
bool matches_any(const std::string& file, const std::vector<std::string>& globs);

// "engine download org/name [--repo-type dataset] [--revision R]", the command that fetches `id`.
std::string download_command(const HubId& id);

}  // namespace engine::hub
