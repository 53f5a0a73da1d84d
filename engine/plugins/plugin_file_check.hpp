// Checks of a plugin file before dlopen(3) ever sees it. dlopen maps the file and trusts its headers: a
// truncated library faults (SIGBUS) on the first page past the end of the file, and a file that another user
// can write can be replaced by their code. Each check returns "" when the file passes, else the reason and
// the fix, which the registry reports as a refusal; the other plugins still load.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace engine::plugins {

// The ELF header, program headers and section header table of a shared library for this machine (64-bit,
// little-endian, ET_DYN, this architecture), all inside `file_size` bytes, with every loadable segment's
// file bytes inside the file as well. `head` is the start of the file (the first 64 KiB are enough for every
// real library: the program headers follow the ELF header); a header table that lies beyond `head` but
// inside the file is accepted unchecked, one beyond the file is refused.
std::string check_elf_image(std::span<const uint8_t> head, uint64_t file_size);

// Reads the start of `path` and its size and runs check_elf_image.
std::string check_elf_file(const std::filesystem::path& path);

// A plugin file that anyone may write (mode o+w), or that sits in a folder anyone may write (so the file can
// be replaced), runs another user's code in this process: refused unless allow_insecure (the
// --allow-insecure-plugins flag). Symlinks are followed: the checked file and folder are the real ones.
std::string check_plugin_permissions(const std::filesystem::path& path, bool allow_insecure);

}  // namespace engine::plugins
