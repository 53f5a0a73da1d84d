// The on-disk protocol of checkpoints: <output_dir>/checkpoint-<step>/ directories that appear complete or
// not at all, a `latest` pointer that moves only after one is complete, and keep_last pruning that deletes
// old ones only after the new one is in place.
//
// publish_checkpoint:
//   1. fill() writes every file into <output_dir>/.tmp-checkpoint-<step>/ (a leftover of a killed run is
//   removed)
//   2. every file and the directory are fsynced
//   3. the directory is renamed to checkpoint-<step> (replacing an older one of the same step) and
//      <output_dir> is fsynced
//   4. `latest` (one line: the directory's name) is written to latest.tmp, fsynced and renamed over latest
//   5. keep_last > 0: checkpoint-* directories beyond the newest keep_last are deleted
// A kill at any point leaves the previous `latest` valid.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace engine::train {

namespace fs = std::filesystem;

std::string checkpoint_name(int64_t step);  // "checkpoint-<step>"

// Returns the published directory.
fs::path publish_checkpoint(const fs::path& output_dir, int64_t step, int64_t keep_last,
                            const std::function<void(const fs::path& dir)>& fill);

// Complete checkpoints (checkpoint-<step> directories with a trainer_state.json), oldest first.
std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& output_dir);

// The newest complete checkpoint: the highest step listed (`latest` may lag one behind after a kill).
std::optional<fs::path> latest_checkpoint(const fs::path& output_dir);

// --resume: "none" -> nullopt; "auto" -> latest_checkpoint (nullopt when there is none); otherwise a
// directory that must hold a complete checkpoint (throws engine::Error naming what is missing).
std::optional<fs::path> resolve_resume(const fs::path& output_dir, const std::string& spec);

// Fault injection for the tests: when the environment variable ENGINE_FAULT_CHECKPOINT equals `point`,
// throws engine::Error (ENG_ERR_IO) "injected fault at <point>" as a failed write there would. Points:
// weights, optimizer, recipe, trainer_state, manifest (inside the temporary directory), fsync, rename, latest,
// prune (publishing).
void checkpoint_fault_point(const char* point);

// fsync a file or a directory; throws engine::Error (ENG_ERR_IO) naming the path.
void fsync_path(const fs::path& path);

}  // namespace engine::train
