// libFuzzer target: the checkpoint state reader. The input is a trainer_state.json, optionally followed by
// "\n--manifest--\n" and a manifest.json; both are written into a scratch checkpoint directory (beside a
// small adapter file the manifest may list) and read back as a resume does: TrainerState::read, then the
// manifest check.
#include <unistd.h>

#include <fstream>

#include "engine/io/checkpoint_manifest.hpp"
#include "engine/train/trainer_state.hpp"
#include "fuzz/fuzz_support.hpp"

namespace {

void write(const std::filesystem::path& p, std::string_view text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("checkpoint-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    write(d / "adapter_model.safetensors", "0123456789");
    return d;
  }();
  const auto [state, manifest] = engine::fuzz::split_once(engine::fuzz::as_text(data, size), "\n--manifest--\n");
  write(dir / "trainer_state.json", state);
  write(dir / "manifest.json", manifest);
  engine::fuzz::expect_clean([&] { (void)engine::train::TrainerState::read(dir / "trainer_state.json"); });
  engine::fuzz::expect_clean([&] { engine::io::verify_checkpoint_manifest(dir); });
  return 0;
}
