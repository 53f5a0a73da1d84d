// The plugin registry: loads plugin libraries, negotiates the ABI, and keeps every accepted plugin keyed by
// (kind, name). A file that cannot be used becomes a Problem (a message naming the file, the versions and the
// fix) and never stops the other files from loading. Libraries are unloaded only when the registry is
// destroyed, which the engine does only after everything the plugins made is gone.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/abi/all.h"

namespace engine::plugins {

// An accepted plugin: what its descriptor said, and where it came from.
struct PluginRecord {
  eng_plugin_kind kind = 0;
  std::string name;
  std::string version;  // the plugin's own version
  std::string description;
  std::string options_schema_json;
  uint32_t abi_version = 0;  // the negotiated ABI version
  uint64_t capabilities = 0;
  const void* vtable = nullptr;  // the kind's table (eng_model_vtable, ...)
  std::filesystem::path path;
  std::vector<std::string> warnings;  // loaded, but not built as the SDK says (plugin_warnings.hpp)

  bool has(uint64_t capability) const noexcept { return (capabilities & capability) == capability; }
  template <typename Table>
  const Table* table() const noexcept {
    return static_cast<const Table*>(vtable);
  }
};

// A file on the search path that was refused.
struct LoadProblem {
  std::filesystem::path path;
  std::string message;
};

class PluginRegistry {
 public:
  // host: handed to each plugin's negotiate (may be nullptr when the registry only lists and validates).
  // host_abi_min/max: the versions this engine speaks (tests narrow them).
  explicit PluginRegistry(const eng_host_api* host = nullptr,
                          uint32_t host_abi_min = ENG_ABI_MAKE_VERSION(1, 0),
                          uint32_t host_abi_max = ENG_ABI_VERSION);
  ~PluginRegistry();
  PluginRegistry(const PluginRegistry&) = delete;
  PluginRegistry& operator=(const PluginRegistry&) = delete;

  // Loads every `*.so` of each folder (sorted by name) or each file named directly, in order; the first
  // plugin of a (kind, name) wins. Missing folders are skipped. Problems are recorded and logged as warnings.
  void load_search_path(const std::vector<std::filesystem::path>& entries);
  // Loads one file; returns the record, or nullptr after recording a problem.
  const PluginRecord* load_file(const std::filesystem::path& path);

  const PluginRecord* find(eng_plugin_kind kind, const std::string& name) const;
  // Every plugin of `kind` by name, or every plugin when kind is 0; sorted by kind then name.
  std::vector<const PluginRecord*> list(eng_plugin_kind kind = 0) const;
  std::vector<std::string> names(eng_plugin_kind kind) const;
  // The plugins of any kind called `name`.
  std::vector<const PluginRecord*> find_any_kind(const std::string& name) const;
  const std::vector<LoadProblem>& problems() const noexcept { return problems_; }
  // Installed plugins replaced by a same-named one found first on ENGINE_PLUGIN_PATH (logged at info).
  const std::vector<LoadProblem>& shadowed() const noexcept { return shadowed_; }
  // Load plugin files that others may write, or in folders others may write (--allow-insecure-plugins).
  void set_allow_insecure(bool allow) noexcept { allow_insecure_ = allow; }
  // The folder of installed plugins (default: installed_plugin_dir()); a same-named plugin found earlier on
  // the search path shadows one there, reported at info level instead of refused as a duplicate.
  void set_installed_dir(std::filesystem::path dir) { installed_dir_ = std::move(dir); }

  // The plugin for a recipe slot, or throws engine::Error explaining: a wrong kind ("'x' is a peft plugin,
  // the [optimizer] slot needs an optimizer plugin"), or an unknown name with suggestions and the list of
  // plugins of that kind.
  const PluginRecord& require(eng_plugin_kind kind, const std::string& name) const;
  // The message require() would throw, or "" when the plugin exists.
  std::string why_missing(eng_plugin_kind kind, const std::string& name) const;

 private:
  struct Library;
  void refuse(const std::filesystem::path& path, std::string message);
  bool precheck_file(const std::filesystem::path& path);
  bool note_shadowed(const PluginRecord& used, const std::filesystem::path& installed_path);

  const eng_host_api* host_;
  uint32_t host_abi_min_;
  uint32_t host_abi_max_;
  std::vector<std::unique_ptr<Library>> libraries_;
  std::map<std::pair<eng_plugin_kind, std::string>, PluginRecord> plugins_;
  std::vector<std::filesystem::path> loaded_files_;  // canonical paths already tried
  std::vector<LoadProblem> problems_;
  std::vector<LoadProblem> shadowed_;
  bool allow_insecure_ = false;
  std::filesystem::path installed_dir_;
};

}  // namespace engine::plugins
