// engine download ID [--revision R] [--include GLOB]... [--repo-type model|dataset]
// Fetches a repo of the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN) into the Hugging Face cache exactly as
// huggingface_hub lays it out (engine/hub/hub_download.hpp) and prints the snapshot folder on stdout.
// ID may carry the revision itself (org/name@R). Exit 0 done, 1 the download failed, 2 usage.
#include <iostream>

#include "engine/cli/command.hpp"
#include "engine/hub/hub_download.hpp"

namespace engine::cli {

int download_command(const std::vector<std::string>& args) {
  std::string id_text, revision, repo_type = "model";
  std::vector<std::string> include;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const std::string& name) -> std::string {
      if (a.rfind(name + "=", 0) == 0) return a.substr(name.size() + 1);
      if (i + 1 >= args.size()) throw UsageError(name + " needs a value");
      return args[++i];
    };
    if (a == "--revision" || a.rfind("--revision=", 0) == 0) {
      revision = value("--revision");
    } else if (a == "--include" || a.rfind("--include=", 0) == 0) {
      include.push_back(value("--include"));
    } else if (a == "--repo-type" || a.rfind("--repo-type=", 0) == 0) {
      repo_type = value("--repo-type");
      if (repo_type != "model" && repo_type != "dataset")
        throw UsageError("--repo-type is model or dataset, not '" + repo_type + "'");
    } else if (!a.empty() && a[0] == '-') {
      throw UsageError("unknown option '" + a + "' (known: --revision, --include, --repo-type)");
    } else if (id_text.empty()) {
      id_text = a;
    } else {
      throw UsageError("unexpected argument '" + a + "' (one repo id per command)");
    }
  }
  if (id_text.empty()) throw UsageError("missing the repo id (org/name)");
  auto id = hub::parse_hub_id(id_text, repo_type == "dataset" ? hub::RepoType::kDataset : hub::RepoType::kModel);
  if (!id) throw UsageError("'" + id_text + "' is not a Hub id (org/name or org/name@revision)");
  if (!revision.empty()) {
    if (id_text.find('@') != std::string::npos) throw UsageError("give the revision once: in the id or --revision");
    id->revision = revision;
  }
  if (hub::hub_offline_from_env()) {
    std::cerr << "engine download: HF_HUB_OFFLINE is set; unset it to download " << id->str() << "\n";
    return kExitRuntime;
  }
  hub::DownloadOptions options;
  options.include = include;
  hub::DownloadResult r = hub::download_snapshot(*id, options);
  std::cerr << "engine download: " << id->str() << " at commit " << r.commit << ": " << r.files.size()
            << " file" << (r.files.size() == 1 ? "" : "s") << " (" << r.fetched << " fetched now)\n";
  std::cout << r.snapshot.string() << "\n";
  return kExitOk;
}

}  // namespace engine::cli
