#include "engine/train/checkpoint_dir.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "engine/core/error.hpp"

namespace engine::train {
namespace {

constexpr const char* kStateFile = "trainer_state.json";

std::optional<int64_t> step_of(const std::string& name) {
  const std::string prefix = "checkpoint-";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return std::nullopt;
  int64_t step = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

void write_synced(const fs::path& path, const std::string& text) {
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) fail_with(ENG_ERR_IO, "cannot write {}: {}", path.string(), std::strerror(errno));
    f << text;
    if (!f.flush()) fail_with(ENG_ERR_IO, "cannot write {}: {}", path.string(), std::strerror(errno));
  }
  fsync_path(path);
}

bool complete(const fs::path& dir) { return fs::is_regular_file(dir / kStateFile); }

}  // namespace

void checkpoint_fault_point(const char* point) {
  const char* want = std::getenv("ENGINE_FAULT_CHECKPOINT");
  if (want != nullptr && std::strcmp(want, point) == 0)
    fail_with(ENG_ERR_IO, "injected fault at {} (ENGINE_FAULT_CHECKPOINT)", point);
}

std::string checkpoint_name(int64_t step) { return "checkpoint-" + std::to_string(step); }

void fsync_path(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_with(ENG_ERR_IO, "cannot open {} to sync it: {}", path.string(), std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) fail_with(ENG_ERR_IO, "cannot fsync {}: {}", path.string(), std::strerror(err));
}

fs::path publish_checkpoint(const fs::path& output_dir, int64_t step, int64_t keep_last,
                            const std::function<void(const fs::path& dir)>& fill) {
  std::error_code ec;
  fs::create_directories(output_dir, ec);
  if (ec)
    fail_with(ENG_ERR_IO, "cannot create the output directory {}: {}", output_dir.string(), ec.message());
  const fs::path tmp = output_dir / (".tmp-" + checkpoint_name(step));
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  if (ec) fail_with(ENG_ERR_IO, "cannot create {}: {}", tmp.string(), ec.message());

  fill(tmp);

  checkpoint_fault_point("fsync");
  for (const auto& entry : fs::recursive_directory_iterator(tmp)) {
    if (entry.is_regular_file() || entry.is_directory()) fsync_path(entry.path());
  }
  fsync_path(tmp);

  const fs::path final_dir = output_dir / checkpoint_name(step);
  checkpoint_fault_point("rename");
  if (fs::exists(final_dir)) {
    // Same step saved again (a resumed run that stops where it resumed): swap, then delete the old one.
    const fs::path old = output_dir / (".old-" + checkpoint_name(step));
    fs::remove_all(old, ec);
    fs::rename(final_dir, old, ec);
    if (ec) fail_with(ENG_ERR_IO, "cannot move {} aside: {}", final_dir.string(), ec.message());
    fs::rename(tmp, final_dir, ec);
    if (ec)
      fail_with(ENG_ERR_IO, "cannot rename {} to {}: {}", tmp.string(), final_dir.string(), ec.message());
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp, final_dir, ec);
    if (ec)
      fail_with(ENG_ERR_IO, "cannot rename {} to {}: {}", tmp.string(), final_dir.string(), ec.message());
  }
  fsync_path(output_dir);

  checkpoint_fault_point("latest");
  const fs::path latest_tmp = output_dir / "latest.tmp";
  write_synced(latest_tmp, checkpoint_name(step) + "\n");
  fs::rename(latest_tmp, output_dir / "latest", ec);
  if (ec) fail_with(ENG_ERR_IO, "cannot update {}: {}", (output_dir / "latest").string(), ec.message());
  fsync_path(output_dir);

  if (keep_last > 0) {
    checkpoint_fault_point("prune");
    auto all = list_checkpoints(output_dir);
    const int64_t excess = static_cast<int64_t>(all.size()) - keep_last;
    for (int64_t i = 0; i < excess; ++i) {
      if (all[static_cast<size_t>(i)].second == final_dir) continue;
      fs::remove_all(all[static_cast<size_t>(i)].second, ec);
      if (ec)
        fail_with(ENG_ERR_IO, "cannot delete the old checkpoint {}: {}",
                  all[static_cast<size_t>(i)].second.string(), ec.message());
    }
  }
  return final_dir;
}

std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& output_dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(output_dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(output_dir, ec)) {
    if (!entry.is_directory()) continue;
    auto step = step_of(entry.path().filename().string());
    if (step && complete(entry.path())) out.emplace_back(*step, entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<fs::path> latest_checkpoint(const fs::path& output_dir) {
  // The highest complete step, even when `latest` names an older one: a run killed after renaming a new
  // checkpoint into place but before moving `latest` has that checkpoint complete on disk.
  auto all = list_checkpoints(output_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

std::optional<fs::path> resolve_resume(const fs::path& output_dir, const std::string& spec) {
  if (spec.empty() || spec == "none") return std::nullopt;
  if (spec == "auto") return latest_checkpoint(output_dir);
  fs::path dir(spec);
  if (!fs::is_directory(dir))
    fail("--resume {}: no such directory (use auto, none, or a checkpoint directory)", spec);
  if (!complete(dir)) {
    fail("--resume {}: not a complete checkpoint ({} is missing); pick a checkpoint-<step> directory", spec,
         kStateFile);
  }
  return dir;
}

}  // namespace engine::train
