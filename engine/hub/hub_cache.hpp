// The local caches that Hub ids resolve in, laid out exactly as the Python tools lay them out, so a model
// that huggingface_hub (transformers, ms-swift, ...) downloaded is used as it is, and one the engine
// downloads is used by them.
//
// Hugging Face (huggingface_hub's file_download.py), under hf_hub_cache():
//   models--org--name/                       (datasets--org--name/ for datasets)
//     refs/<revision>                        the commit a branch or tag points at (40 hex, no newline)
//     snapshots/<commit>/<file>              a relative symlink to ../../blobs/<etag> (deeper for sub-folders)
//     blobs/<etag>                           the bytes; etag = SHA-256 for LFS files, git blob sha1 otherwise
//     blobs/<etag>.incomplete                a download in progress (resumed from its size)
// ModelScope (read only), under modelscope_cache(): models/org/name, org/name (older releases), with '.'
// in the name written '___' by newer releases; datasets/org/name for datasets. It keeps no revisions, so
// it is used only for an id without `@revision`.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "engine/hub/hub_id.hpp"

namespace engine::hub {

// HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub.
std::filesystem::path hf_hub_cache();
// HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
std::filesystem::path hf_home();
// MODELSCOPE_CACHE, else ~/.cache/modelscope/hub.
std::filesystem::path modelscope_cache();

// <cache>/models--org--name (datasets--org--name).
std::filesystem::path repo_folder(const std::filesystem::path& cache, const HubId& id);

struct CachedSnapshot {
  std::filesystem::path path;  // the folder whose files are the repo's files
  std::string commit;          // empty for ModelScope
  std::string where;           // "the Hugging Face cache" | "the ModelScope cache", for logs
};

// The snapshot of `id` in the Hugging Face cache (refs/<revision> or a commit given as the revision), else
// in the ModelScope cache; nothing when neither has it.
std::optional<CachedSnapshot> find_cached_snapshot(const HubId& id);

// The commit refs/<revision> names in repo folder `repo`, if any.
std::optional<std::string> read_ref(const std::filesystem::path& repo, const std::string& revision);
// Writes refs/<revision> = commit (atomically), as huggingface_hub does for a branch or tag.
void write_ref(const std::filesystem::path& repo, const std::string& revision, const std::string& commit);

// Links snapshots/<commit>/<file> to blobs/<etag> by a relative symlink (a copy where the file system has no
// symlinks, as huggingface_hub does on Windows without developer mode).
void link_snapshot_file(const std::filesystem::path& repo, const std::string& commit, const std::string& file,
                        const std::string& etag);

}  // namespace engine::hub
