#include "engine/plugins/elf_exports.hpp"

#include <elf.h>

#include <cstring>
#include <fstream>
#include <iterator>

namespace engine::plugins {

namespace {

template <typename T>
bool read_at(const std::vector<char>& bytes, uint64_t offset, T& out) {
  if (offset > bytes.size() || bytes.size() - offset < sizeof(T)) return false;
  std::memcpy(&out, bytes.data() + offset, sizeof(T));
  return true;
}

}  // namespace

std::optional<std::vector<std::string>> elf_exported_symbols(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Elf64_Ehdr eh{};
  if (!read_at(bytes, 0, eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
      eh.e_shentsize != sizeof(Elf64_Shdr)) {
    return std::nullopt;
  }
  for (uint16_t i = 0; i < eh.e_shnum; ++i) {
    Elf64_Shdr sh{};
    if (!read_at(bytes, eh.e_shoff + uint64_t{i} * sizeof(Elf64_Shdr), sh)) return std::nullopt;
    if (sh.sh_type != SHT_DYNSYM || sh.sh_entsize != sizeof(Elf64_Sym)) continue;
    Elf64_Shdr strtab{};
    if (sh.sh_link >= eh.e_shnum ||
        !read_at(bytes, eh.e_shoff + uint64_t{sh.sh_link} * sizeof(Elf64_Shdr), strtab) ||
        strtab.sh_offset > bytes.size() || bytes.size() - strtab.sh_offset < strtab.sh_size) {
      return std::nullopt;
    }
    std::vector<std::string> names;
    for (uint64_t k = 1; k < sh.sh_size / sizeof(Elf64_Sym); ++k) {  // entry 0 is the null symbol
      Elf64_Sym sym{};
      if (!read_at(bytes, sh.sh_offset + k * sizeof(Elf64_Sym), sym)) return std::nullopt;
      const unsigned bind = ELF64_ST_BIND(sym.st_info);
      if (sym.st_shndx == SHN_UNDEF || (bind != STB_GLOBAL && bind != STB_WEAK)) continue;
      if (sym.st_name >= strtab.sh_size) return std::nullopt;
      const char* s = bytes.data() + strtab.sh_offset + sym.st_name;
      std::string name(s, strnlen(s, strtab.sh_size - sym.st_name));
      if (name == "_init" || name == "_fini" || name == "_edata" || name == "_end" || name == "__bss_start")
        continue;
      names.push_back(std::move(name));
    }
    return names;
  }
  return std::nullopt;
}

}  // namespace engine::plugins
