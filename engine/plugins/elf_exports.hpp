// The symbols a shared library exports, read from its ELF dynamic symbol table (.dynsym) without loading it:
// defined, global or weak symbols, minus the markers every linker adds (_init, _fini, _edata, _end,
// __bss_start). A plugin should export exactly one (engine_plugin_negotiate); more means it was built
// without the SDK's engine_add_plugin() (hidden visibility and a version script), so its symbols can clash.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace engine::plugins {

// nullopt when the file is not a readable 64-bit little-endian ELF with a dynamic symbol table.
std::optional<std::vector<std::string>> elf_exported_symbols(const std::filesystem::path& path);

}  // namespace engine::plugins
