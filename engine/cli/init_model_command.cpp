// engine init-model --arch llama|qwen2 --preset tiny|small --out DIR [--seed N]
// Writes a randomly initialised model in Hugging Face layout that transformers loads as it is:
//   config.json             the model plugin's preset (eng_model_vtable.preset_config)
//   model.safetensors       every parameter, fp32, initialised as the plugin declared (N(0, 0.02) weights,
//                           ones for norms, zeros for biases) from the parameter store's generator seeded
//                           with N: the same seed gives the same bytes
//   tokenizer.json, tokenizer_config.json   the small BPE tokenizer of the preset (preset_tokenizers.hpp)
// DIR must be new or empty.
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "engine/cli/command.hpp"
#include "engine/cli/option_args.hpp"
#include "engine/cli/preset_tokenizers.hpp"
#include "engine/core/error.hpp"
#include "engine/host/host_session.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/runtime/device.hpp"
#include "engine/session/model_loader.hpp"
#include "engine/session/model_writer.hpp"

namespace engine::cli {

namespace fs = std::filesystem;

int init_model_command(const std::vector<std::string>& args) {
  OptionArgs o = parse_option_args(args, {"--arch", "--preset", "--out", "--seed"}, {});
  const std::string arch = o.require("--arch"), preset = o.require("--preset");
  const fs::path out = o.require("--out");
  const int64_t seed = o.get_int("--seed", 0);
  if (seed < 0) throw UsageError("--seed must be >= 0");

  auto registry = discover_plugins();
  const plugins::PluginRecord& plugin = registry->require(ENG_KIND_MODEL, arch);
  const eng_model_vtable* vt = plugin.table<eng_model_vtable>();
  const char* config = vt->preset_config != nullptr ? vt->preset_config(preset.c_str()) : nullptr;
  if (config == nullptr) {
    throw UsageError("model plugin '" + arch + "' has no preset '" + preset +
                     "' (the built-in ones have tiny, small)");
  }
  std::optional<PresetTokenizerFiles> tokenizer = preset_tokenizer_files(arch);
  if (!tokenizer) {
    fail("init-model has no tokenizer for architecture '{}' (it ships tokenizers for qwen2 and llama)", arch);
  }
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out))) {
    fail("--out {} already exists and is not an empty directory; choose a new directory", out.string());
  }
  fs::create_directories(out);

  rt::CpuDevice cpu;
  host::HostSession session(cpu, static_cast<uint64_t>(seed));
  session::ModelInstance model(session, plugin, config, R"({"dtype": "float32"})");
  session::write_model_safetensors(session.params(), out / "model.safetensors", ENG_F32);
  io::write_file_atomic(out / "config.json", config);
  io::write_file_atomic(out / "tokenizer.json", tokenizer->tokenizer_json);
  io::write_file_atomic(out / "tokenizer_config.json", tokenizer->tokenizer_config_json);
  const int64_t n = session.params().numel();
  std::cout << "wrote a " << arch << " '" << preset << "' model (" << n << " parameters, seed " << seed
            << ") to " << out.string() << "\n";
  return kExitOk;
}

}  // namespace engine::cli
