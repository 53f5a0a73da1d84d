#include "engine/plugins/plugin_registry.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cstring>
#include <fstream>
#include <system_error>

#include "engine/core/error.hpp"
#include "engine/plugins/plugin_file_check.hpp"
#include "engine/plugins/plugin_kind.hpp"
#include "engine/plugins/plugin_warnings.hpp"
#include "engine/plugins/plugin_search_path.hpp"
#include "engine/plugins/spelling.hpp"

namespace engine::plugins {

namespace fs = std::filesystem;

struct PluginRegistry::Library {
  boost::dll::shared_library lib;
};

namespace {

// The size of the first ABI v1.0 version of each kind's table: a plugin's table must be at least that big.
size_t min_vtable_size(eng_plugin_kind kind) {
  switch (kind) {
    case ENG_KIND_MODEL:
      return ENG_MODEL_VTABLE_SIZE_1_0;  // forward_blocks was appended in 1.1
    case ENG_KIND_QUANTIZER:
      return sizeof(eng_quantizer_vtable);
    case ENG_KIND_PEFT:
      return sizeof(eng_peft_vtable);
    case ENG_KIND_PARALLEL:
      return ENG_PARALLEL_VTABLE_SIZE_1_0;  // param_owner was appended in 1.1
    case ENG_KIND_OPTIMIZER:
      return sizeof(eng_optimizer_vtable);
    default:
      return 0;
  }
}

// create and destroy are the first two entries after struct_size in every kind's table.
bool has_create_and_destroy(const void* vtable) {
  struct Head {
    uint32_t struct_size;
    void (*create)();
    void (*destroy)();
  };
  const Head* h = static_cast<const Head*>(vtable);
  return h->create != nullptr && h->destroy != nullptr;
}

std::string str(const char* s) { return s != nullptr ? s : ""; }

}  // namespace

PluginRegistry::PluginRegistry(const eng_host_api* host, uint32_t host_abi_min, uint32_t host_abi_max)
    : host_(host), host_abi_min_(host_abi_min), host_abi_max_(host_abi_max) {}

// Records are dropped before the libraries their strings and tables came from.
PluginRegistry::~PluginRegistry() {
  plugins_.clear();
  libraries_.clear();
}

void PluginRegistry::refuse(const fs::path& path, std::string message) {
  spdlog::warn("plugin {} refused: {}", path.string(), message);
  problems_.push_back({path, std::move(message)});
}

void PluginRegistry::load_search_path(const std::vector<fs::path>& entries) {
  std::vector<fs::path> seen_dirs;
  for (const fs::path& entry : entries) {
    std::error_code ec;
    if (fs::is_regular_file(entry, ec)) {
      load_file(entry);
      continue;
    }
    if (!fs::is_directory(entry, ec)) {
      spdlog::debug("plugin search path entry {} does not exist; skipped", entry.string());
      continue;
    }
    fs::path canonical = fs::weakly_canonical(entry, ec);
    if (std::find(seen_dirs.begin(), seen_dirs.end(), canonical) != seen_dirs.end()) continue;
    seen_dirs.push_back(canonical);
    std::vector<fs::path> files;
    for (const fs::directory_entry& f : fs::directory_iterator(entry, ec)) {
      if (f.path().extension() == ".so" && f.is_regular_file(ec)) files.push_back(f.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) load_file(f);
  }
}

const PluginRecord* PluginRegistry::load_file(const fs::path& path) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(path, ec);
  if (ec) canonical = path;
  if (std::find(loaded_files_.begin(), loaded_files_.end(), canonical) != loaded_files_.end()) return nullptr;
  loaded_files_.push_back(canonical);

  if (!precheck_file(path)) return nullptr;
  auto library = std::make_unique<Library>();
  try {
    library->lib.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    refuse(path, std::string("cannot be loaded: ") + e.what() +
                     "; check that it was built for this platform and that its dependencies are installed");
    return nullptr;
  }
  if (!library->lib.has(ENG_PLUGIN_ENTRY_SYMBOL)) {
    refuse(path, std::string("is a shared library but not an engine plugin: it does not export '") +
                     ENG_PLUGIN_ENTRY_SYMBOL +
                     "'; build it with the SDK's engine_add_plugin() and an ENGINE_REGISTER_<KIND> macro");
    return nullptr;
  }
  auto& negotiate = library->lib.get<eng_status(const eng_negotiate_request*, eng_plugin_descriptor*)>(
      ENG_PLUGIN_ENTRY_SYMBOL);

  eng_negotiate_request req{};
  req.struct_size = sizeof(req);
  req.host_abi_min = host_abi_min_;
  req.host_abi_max = host_abi_max_;
  req.host = host_;
  eng_plugin_descriptor d{};
  d.struct_size = sizeof(d);
  eng_status status = negotiate(&req, &d);

  const std::string host_range = abi_string(host_abi_min_) == abi_string(host_abi_max_)
                                     ? abi_string(host_abi_max_)
                                     : abi_string(host_abi_min_) + " to " + abi_string(host_abi_max_);
  const std::string who = d.name != nullptr ? "plugin '" + str(d.name) + "'" : std::string("the plugin");
  const uint32_t theirs = d.abi_version;
  if (status == ENG_ERR_VERSION || (status == ENG_OK && (theirs < host_abi_min_ || theirs > host_abi_max_))) {
    std::string fix;
    if (ENG_ABI_MAJOR_OF(theirs) != ENG_ABI_MAJOR_OF(host_abi_max_)) {
      fix = "ABI major versions must match: rebuild the plugin against the SDK of this engine (ABI " +
            abi_string(host_abi_max_) + "), or use an engine whose ABI major is " +
            std::to_string(ENG_ABI_MAJOR_OF(theirs));
    } else if (theirs > host_abi_max_) {
      fix = "the plugin needs a newer engine: upgrade the engine to one that speaks ABI " +
            abi_string(theirs) + ", or rebuild the plugin against this engine's SDK (ABI " +
            abi_string(host_abi_max_) + ")";
    } else {
      fix = "the plugin is older than this engine supports: rebuild it against this engine's SDK (ABI " +
            abi_string(host_abi_max_) + ")";
    }
    refuse(path, who + " uses plugin ABI " + abi_string(theirs) + " but this engine speaks ABI " +
                     host_range + "; " + fix);
    return nullptr;
  }
  if (status != ENG_OK) {
    refuse(path, who + ": " + ENG_PLUGIN_ENTRY_SYMBOL + " failed with status " + std::to_string(status) +
                     " (" + status_name(status) + "); the plugin's author must fix it");
    return nullptr;
  }
  if (d.name == nullptr || *d.name == '\0') {
    refuse(path, "the plugin's descriptor has no name; it must set a non-empty name");
    return nullptr;
  }
  if (min_vtable_size(d.kind) == 0) {
    refuse(path, who + " declares unknown kind " + std::to_string(d.kind) +
                     "; kinds are model, quantizer, peft, parallel, optimizer (a newer ABI?)");
    return nullptr;
  }
  if (d.vtable == nullptr || *static_cast<const uint32_t*>(d.vtable) < min_vtable_size(d.kind) ||
      !has_create_and_destroy(d.vtable)) {
    refuse(
        path,
        who + " returned an incomplete " + kind_name(d.kind) +
            " table (missing, smaller than ABI 1.0's, or without create/destroy); rebuild it with the SDK");
    return nullptr;
  }

  PluginRecord rec;
  rec.kind = d.kind;
  rec.name = d.name;
  rec.version = str(d.version);
  rec.description = str(d.description);
  rec.options_schema_json = d.options_schema_json != nullptr ? d.options_schema_json : "{}";
  rec.abi_version = theirs;
  rec.capabilities = d.capabilities;
  rec.vtable = d.vtable;
  rec.path = fs::absolute(path).lexically_normal();

  auto key = std::make_pair(rec.kind, rec.name);
  if (auto it = plugins_.find(key); it != plugins_.end() && note_shadowed(it->second, rec.path)) return nullptr;
  if (auto it = plugins_.find(key); it != plugins_.end()) {
    refuse(path, std::string("duplicate ") + kind_name(rec.kind) + " plugin name '" + rec.name +
                     "': already loaded from " + it->second.path.string() +
                     "; the first one found is used. Remove one of the two files from the plugin search path "
                     "(or rename one plugin)");
    return nullptr;
  }
  libraries_.push_back(std::move(library));
  rec.warnings = plugin_warnings(path, rec.options_schema_json);
  for (const std::string& w : rec.warnings) spdlog::warn("plugin {} ({}): {}", rec.name, path.string(), w);
  spdlog::debug("loaded {} plugin '{}' {} (ABI {}) from {}", kind_name(rec.kind), rec.name, rec.version,
                abi_string(rec.abi_version), path.string());
  return &plugins_.emplace(key, std::move(rec)).first->second;
}

// Before dlopen: the permission check (a file others can replace) and the ELF check (a truncated or foreign
// file would fault inside dlopen, taking every other plugin down with it).
bool PluginRegistry::precheck_file(const fs::path& path) {
  std::string reason = check_plugin_permissions(path, allow_insecure_);
  if (reason.empty()) reason = check_elf_file(path);
  if (reason.empty()) return true;
  refuse(path, std::move(reason));
  return false;
}

// A plugin on ENGINE_PLUGIN_PATH that has the name of an installed one replaces it: that is how a user tries a
// fixed build, so it is no error, but it is said at info level (and listed by `engine plugins`) so that it is
// never silent. A duplicate anywhere else stays a refusal.
bool PluginRegistry::note_shadowed(const PluginRecord& used, const fs::path& installed_path) {
  std::error_code ec;
  const fs::path installed = fs::weakly_canonical(installed_dir_.empty() ? installed_plugin_dir() : installed_dir_, ec);
  if (fs::weakly_canonical(installed_path.parent_path(), ec) != installed ||
      fs::weakly_canonical(used.path.parent_path(), ec) == installed)
    return false;
  std::string message = std::string(kind_name(used.kind)) + " plugin '" + used.name + "' from " +
                        used.path.string() + " shadows the installed one at " + installed_path.string() +
                        " (ENGINE_PLUGIN_PATH comes first); remove it from ENGINE_PLUGIN_PATH to use the installed one";
  spdlog::info("{}", message);
  shadowed_.push_back({installed_path, std::move(message)});
  return true;
}

const PluginRecord* PluginRegistry::find(eng_plugin_kind kind, const std::string& name) const {
  auto it = plugins_.find({kind, name});
  return it == plugins_.end() ? nullptr : &it->second;
}

std::vector<const PluginRecord*> PluginRegistry::list(eng_plugin_kind kind) const {
  std::vector<const PluginRecord*> out;
  for (const auto& [key, rec] : plugins_) {
    if (kind == 0 || key.first == kind) out.push_back(&rec);
  }
  return out;
}

std::vector<std::string> PluginRegistry::names(eng_plugin_kind kind) const {
  std::vector<std::string> out;
  for (const PluginRecord* r : list(kind)) out.push_back(r->name);
  return out;
}

std::vector<const PluginRecord*> PluginRegistry::find_any_kind(const std::string& name) const {
  std::vector<const PluginRecord*> out;
  for (const auto& [key, rec] : plugins_) {
    if (key.second == name) out.push_back(&rec);
  }
  return out;
}

std::string PluginRegistry::why_missing(eng_plugin_kind kind, const std::string& name) const {
  if (find(kind, name) != nullptr) return "";
  const std::string k = kind_name(kind);
  std::vector<std::string> available = names(kind);
  std::string list =
      available.empty()
          ? "none is installed: put the folder of the plugin's .so on ENGINE_PLUGIN_PATH, or keep "
            "the engine's plugins in <prefix>/lib/engine/plugins next to the executable"
          : "available " + k + " plugins: " + join(available);
  std::vector<const PluginRecord*> others = find_any_kind(name);
  if (!others.empty()) {
    auto article = [](const std::string& word) { return word[0] == 'o' ? "an " : "a "; };
    const std::string other = kind_name(others[0]->kind);
    return "plugin '" + name + "' is " + article(other) + other + " plugin (" + others[0]->path.string() +
           "), but the [" + k + "] slot needs " + article(k) + k + " plugin; " + list;
  }
  std::string message = "no " + k + " plugin named '" + name + "'" + did_you_mean(name, available);
  message += " (" + list + ")";
  for (const LoadProblem& p : problems_) {
    if (p.message.find("'" + name + "'") != std::string::npos) {
      message += "; a file that may provide it was refused: " + p.path.string() + ": " + p.message;
    }
  }
  return message;
}

const PluginRecord& PluginRegistry::require(eng_plugin_kind kind, const std::string& name) const {
  if (const PluginRecord* r = find(kind, name)) return *r;
  fail("{}", why_missing(kind, name));
}

}  // namespace engine::plugins
