#include "engine/hub/hub_cache.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "engine/core/error.hpp"

namespace engine::hub {

namespace fs = std::filesystem;

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

fs::path expand_user(const std::string& p) {
  if (p.size() >= 1 && p[0] == '~' && (p.size() == 1 || p[1] == '/')) {
    if (auto home = env("HOME")) return fs::path(*home) / p.substr(p.size() > 1 ? 2 : 1);
  }
  return fs::path(p);
}

fs::path user_cache() {
  if (auto x = env("XDG_CACHE_HOME")) return expand_user(*x);
  return expand_user("~/.cache");
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

}  // namespace

fs::path hf_home() {
  if (auto h = env("HF_HOME")) return expand_user(*h);
  return user_cache() / "huggingface";
}

fs::path hf_hub_cache() {
  if (auto c = env("HF_HUB_CACHE")) return expand_user(*c);
  if (auto c = env("HUGGINGFACE_HUB_CACHE")) return expand_user(*c);
  return hf_home() / "hub";
}

fs::path modelscope_cache() {
  if (auto c = env("MODELSCOPE_CACHE")) return expand_user(*c);
  return expand_user("~/.cache/modelscope/hub");
}

fs::path repo_folder(const fs::path& cache, const HubId& id) {
  std::string name = std::string(repo_type_plural(id.type)) + "--" + id.repo;
  for (size_t p = name.find('/'); p != std::string::npos; p = name.find('/', p)) name.replace(p, 1, "--");
  return cache / name;
}

std::optional<std::string> read_ref(const fs::path& repo, const std::string& revision) {
  std::ifstream in(repo / "refs" / revision);
  if (!in) return std::nullopt;
  std::string commit;
  in >> commit;
  if (!is_commit_hash(commit)) return std::nullopt;
  return commit;
}

void write_ref(const fs::path& repo, const std::string& revision, const std::string& commit) {
  if (revision == commit) return;
  const fs::path ref = repo / "refs" / revision;
  fs::create_directories(ref.parent_path());
  const fs::path tmp = ref.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << commit;
    if (!out) fail_with(ENG_ERR_IO, "cannot write {}", tmp.string());
  }
  fs::rename(tmp, ref);
}

void link_snapshot_file(const fs::path& repo, const std::string& commit, const std::string& file,
                        const std::string& etag) {
  const fs::path link = repo / "snapshots" / commit / file;
  const fs::path blob = repo / "blobs" / etag;
  fs::create_directories(link.parent_path());
  std::error_code ec;
  fs::remove(link, ec);
  const fs::path target = blob.lexically_relative(link.parent_path());
  fs::create_symlink(target, link, ec);
  if (ec) fs::copy_file(blob, link, fs::copy_options::overwrite_existing);
}

std::optional<CachedSnapshot> find_cached_snapshot(const HubId& id) {
  const fs::path repo = repo_folder(hf_hub_cache(), id);
  std::optional<std::string> commit =
      is_commit_hash(id.revision) ? std::optional<std::string>(id.revision) : read_ref(repo, id.revision);
  if (commit && is_dir(repo / "snapshots" / *commit)) {
    return CachedSnapshot{repo / "snapshots" / *commit, *commit, "the Hugging Face cache"};
  }
  if (id.revision != "main") return std::nullopt;
  const fs::path ms = modelscope_cache();
  const std::string org = id.repo.substr(0, id.repo.find('/'));
  std::string name = id.repo.substr(id.repo.find('/') + 1);
  std::string escaped = name;
  for (size_t p = escaped.find('.'); p != std::string::npos; p = escaped.find('.', p + 3)) escaped.replace(p, 1, "___");
  std::vector<fs::path> candidates;
  if (id.type == RepoType::kDataset) {
    candidates = {ms / "datasets" / org / name, ms / "datasets" / org / escaped};
  } else {
    candidates = {ms / "models" / org / escaped, ms / "models" / org / name, ms / org / escaped, ms / org / name};
  }
  for (const fs::path& c : candidates) {
    if (is_dir(c) && !fs::is_empty(c)) return CachedSnapshot{c, "", "the ModelScope cache"};
  }
  return std::nullopt;
}

}  // namespace engine::hub
