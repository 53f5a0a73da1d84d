#include "engine/plugins/plugin_file_check.hpp"

#include <elf.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <vector>

namespace engine::plugins {

namespace fs = std::filesystem;

namespace {

#if defined(__x86_64__)
constexpr uint16_t kMachine = EM_X86_64;
constexpr const char* kMachineName = "x86-64";
#elif defined(__aarch64__)
constexpr uint16_t kMachine = EM_AARCH64;
constexpr const char* kMachineName = "aarch64";
#else
#error "plugin_file_check.cpp: add this architecture's ELF machine number"
#endif

constexpr size_t kHeadBytes = 64 * 1024;

// Does [offset, offset + count * size) fit in `limit` bytes (without overflow)?
bool table_fits(uint64_t offset, uint64_t count, uint64_t size, uint64_t limit) {
  if (count == 0) return true;
  if (size == 0 || count > limit / size) return false;
  return offset <= limit && count * size <= limit - offset;
}

std::string rebuild(const std::string& what) {
  return what + "; reinstall or rebuild the plugin (a copy that was cut short, or not a library for this machine)";
}

}  // namespace

std::string check_elf_image(std::span<const uint8_t> head, uint64_t file_size) {
  if (head.size() < 4 || std::memcmp(head.data(), ELFMAG, SELFMAG) != 0)
    return "not a shared library (no ELF header); remove it from the plugin folder or ENGINE_PLUGIN_PATH";
  if (head.size() < sizeof(Elf64_Ehdr) || file_size < sizeof(Elf64_Ehdr))
    return rebuild("the file ends inside its ELF header (" + std::to_string(file_size) + " bytes)");
  Elf64_Ehdr eh;
  std::memcpy(&eh, head.data(), sizeof(eh));
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
    return rebuild("not a 64-bit little-endian ELF file");
  if (eh.e_type != ET_DYN) return rebuild("an ELF file but not a shared library (type " + std::to_string(eh.e_type) + ")");
  if (eh.e_machine != kMachine)
    return rebuild("a shared library for another machine (ELF machine " + std::to_string(eh.e_machine) +
                   ", this is " + kMachineName + ")");
  if (eh.e_phnum == 0 || eh.e_phentsize != sizeof(Elf64_Phdr))
    return rebuild("the ELF header has no usable program headers");
  if (!table_fits(eh.e_phoff, eh.e_phnum, eh.e_phentsize, file_size))
    return rebuild("the program headers lie past the end of the file (" + std::to_string(file_size) + " bytes)");
  if (eh.e_shnum != 0 &&
      (eh.e_shentsize != sizeof(Elf64_Shdr) || !table_fits(eh.e_shoff, eh.e_shnum, eh.e_shentsize, file_size))) {
    return rebuild("the section headers lie past the end of the file (" + std::to_string(file_size) +
                   " bytes): the file is truncated");
  }
  if (!table_fits(eh.e_phoff, eh.e_phnum, eh.e_phentsize, head.size())) return "";
  bool has_load = false;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, head.data() + eh.e_phoff + static_cast<uint64_t>(i) * sizeof(Elf64_Phdr), sizeof(ph));
    if (ph.p_type != PT_LOAD) continue;
    has_load = true;
    if (ph.p_filesz > file_size || ph.p_offset > file_size - ph.p_filesz) {
      return rebuild("loadable segment " + std::to_string(i) + " needs bytes up to " +
                     std::to_string(ph.p_offset + ph.p_filesz) + " but the file has " +
                     std::to_string(file_size) + ": the file is truncated");
    }
  }
  if (!has_load) return rebuild("the library has no loadable segment");
  return "";
}

std::string check_elf_file(const fs::path& path) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec) return "cannot read its size: " + ec.message();
  std::ifstream in(path, std::ios::binary);
  if (!in) return "cannot be opened for reading: " + std::string(std::strerror(errno));
  std::vector<uint8_t> head(static_cast<size_t>(std::min<uint64_t>(size, kHeadBytes)));
  in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  return check_elf_image(head, size);
}

std::string check_plugin_permissions(const fs::path& path, bool allow_insecure) {
  if (allow_insecure) return "";
  std::error_code ec;
  fs::path real = fs::canonical(path, ec);
  if (ec) real = path;
  struct stat st {};
  if (::stat(real.c_str(), &st) == 0 && (st.st_mode & S_IWOTH) != 0) {
    return "the file " + real.string() +
           " is world-writable, so any user could replace its code; run chmod o-w on it (or pass "
           "--allow-insecure-plugins to load it anyway)";
  }
  const fs::path folder = real.parent_path();
  if (::stat(folder.c_str(), &st) == 0 && (st.st_mode & S_IWOTH) != 0) {
    return "it is in the world-writable folder " + folder.string() +
           ", where any user could replace it; move it to a folder only you can write (or pass "
           "--allow-insecure-plugins to load it anyway)";
  }
  return "";
}

}  // namespace engine::plugins
