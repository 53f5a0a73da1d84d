// libFuzzer target: the plugin loader's ELF pre-check (the bytes dlopen would otherwise map and trust). The
// input is the start of a file; it is checked once as the whole file and once as the head of a file twice as
// long, so both the truncation and the in-head paths run. Reads past the input would be ASan reports.
#include <span>

#include "engine/plugins/plugin_file_check.hpp"
#include "fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> head(data, size);
  (void)engine::plugins::check_elf_image(head, size);
  (void)engine::plugins::check_elf_image(head, static_cast<uint64_t>(size) * 2);
  return 0;
}
