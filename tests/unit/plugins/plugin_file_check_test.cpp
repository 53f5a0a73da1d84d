// The checks of a plugin file before dlopen (engine/plugins/plugin_file_check.cpp): a real plugin passes;
// cut short at any of a few lengths it is refused with a reason (dlopen of such a file faulted with SIGBUS);
// files and folders others may write are refused unless allowed.
#include "engine/plugins/plugin_file_check.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <vector>

#include "tests/unit/plugins/test_plugin_dirs.hpp"

namespace engine::plugins {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

fs::path a_plugin() { return testing::test_plugin_dir("good") / "libfake_sgd.so"; }

TEST(PluginFileCheck, ARealPluginPasses) {
  const std::vector<uint8_t> bytes = read_bytes(a_plugin());
  ASSERT_GT(bytes.size(), 5000u);
  EXPECT_EQ(check_elf_image(bytes, bytes.size()), "");
  EXPECT_EQ(check_elf_file(a_plugin()), "");
}

TEST(PluginFileCheck, TruncatedCopiesAreRefused) {
  const std::vector<uint8_t> bytes = read_bytes(a_plugin());
  for (size_t n : {size_t{0}, size_t{3}, size_t{40}, size_t{64}, size_t{200}, size_t{5000}, bytes.size() / 2,
                   bytes.size() - 1}) {
    const std::span<const uint8_t> head(bytes.data(), n);
    EXPECT_NE(check_elf_image(head, n), "") << n << " bytes";
  }
  EXPECT_NE(check_elf_image(std::span<const uint8_t>(bytes.data(), 5000), 5000).find("truncated"),
            std::string::npos);
}

TEST(PluginFileCheck, ForeignOrNonLibraryFilesAreRefused) {
  std::vector<uint8_t> bytes = read_bytes(a_plugin());
  std::vector<uint8_t> other = bytes;
  other[18] ^= 0x01;  // e_machine
  EXPECT_NE(check_elf_image(other, other.size()).find("another machine"), std::string::npos);
  other = bytes;
  other[16] = 2;  // e_type ET_EXEC
  EXPECT_NE(check_elf_image(other, other.size()).find("not a shared library"), std::string::npos);
  other = bytes;
  other[4] = 1;  // 32-bit
  EXPECT_NE(check_elf_image(other, other.size()), "");
  const std::string text = "not a plugin";
  EXPECT_NE(check_elf_image({reinterpret_cast<const uint8_t*>(text.data()), text.size()}, text.size())
                .find("no ELF header"),
            std::string::npos);
}

TEST(PluginFileCheck, WritableByOthersIsRefusedUnlessAllowed) {
  const fs::path dir = fs::temp_directory_path() / ("plugin-perm-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  ::chmod(dir.c_str(), 0755);
  const fs::path file = dir / "libx.so";
  fs::copy_file(a_plugin(), file);
  ::chmod(file.c_str(), 0644);
  EXPECT_EQ(check_plugin_permissions(file, false), "");
  ::chmod(file.c_str(), 0646);
  EXPECT_NE(check_plugin_permissions(file, false).find("world-writable"), std::string::npos);
  EXPECT_EQ(check_plugin_permissions(file, true), "");
  ::chmod(file.c_str(), 0644);
  ::chmod(dir.c_str(), 0757);
  EXPECT_NE(check_plugin_permissions(file, false).find("world-writable folder"), std::string::npos);
  // through a symlink in a safe folder, the real (unsafe) folder is what counts
  const fs::path safe = dir.string() + "-safe";
  fs::remove_all(safe);
  fs::create_directories(safe);
  ::chmod(safe.c_str(), 0755);
  fs::create_symlink(file, safe / "libx.so");
  EXPECT_NE(check_plugin_permissions(safe / "libx.so", false).find("world-writable folder"), std::string::npos);
  ::chmod(dir.c_str(), 0755);
  fs::remove_all(dir);
  fs::remove_all(safe);
}

}  // namespace
}  // namespace engine::plugins
