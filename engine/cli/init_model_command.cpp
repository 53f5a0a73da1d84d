// engine init-model --arch llama|qwen2 (--preset tiny|small | --config FILE) --out DIR
//                   [--seed N] [--dtype bf16|f32] [--tokenizer DIR|none] [--max-shard-size 5GB] [--threads N]
// Writes a randomly initialised model in Hugging Face layout that transformers loads as it is:
//   config.json             the plugin's preset, or FILE (a published config.json: 7B runs need no download);
//                           its torch_dtype is set to the dtype written
//   model.safetensors       every parameter initialised as the plugin declared (N(0, initializer_range^2)
//   (or model-0000K-of-0000N.safetensors + model.safetensors.index.json past --max-shard-size, default 5GB)
//                           weights, ones for norms, zeros for biases), from the parameter store's generator
//                           seeded with N: the same seed gives the same bytes, the same as the engine's own
//                           initialisation of the model. Generated range by range straight into the shards
//                           (session::write_initial_model): memory stays at tens of MB for any size.
//                           dtype: f32 for presets, bf16 for --config (the published checkpoints' dtype)
//   tokenizer.json, tokenizer_config.json
//                           --tokenizer DIR: copied from DIR (e.g. the real Qwen tokenizer for a Qwen2.5
//                           config), checked to fit the config's vocabulary and bos/eos ids; none: no
//                           tokenizer. Default: the small BPE tokenizer of the presets
//                           (preset_tokenizers.hpp), when the config's vocabulary and special ids are its own
//                           (the presets'); else refused.
// DIR must not exist or be an empty directory: the model is written into DIR.tmp-XXXXXX beside it and renamed
// to DIR at the end, so nothing of a user's is ever overwritten and a failed run leaves no half model.
#include <spdlog/spdlog.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "engine/cli/command.hpp"
#include "engine/cli/option_args.hpp"
#include "engine/cli/preset_tokenizers.hpp"
#include "engine/core/error.hpp"
#include "engine/data/tokenizer.hpp"
#include "engine/host/host_session.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/runtime/device.hpp"
#include "engine/session/model_loader.hpp"
#include "engine/session/model_writer.hpp"

namespace engine::cli {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p, const char* what) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("cannot read {} {}", what, p.string());
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// "5GB" (10^9, as transformers' max_shard_size), "4GiB" (2^30), "500MB", "1000000" (bytes).
uint64_t parse_byte_size(const std::string& text) {
  size_t unit_at = 0;
  while (unit_at < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[unit_at])) || text[unit_at] == '.'))
    ++unit_at;
  std::string unit = text.substr(unit_at);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1},      {"b", 1},        {"kb", 1e3},     {"mb", 1e6},     {"gb", 1e9},
      {"tb", 1e12}, {"kib", 0x1p10}, {"mib", 0x1p20}, {"gib", 0x1p30}, {"tib", 0x1p40}};
  double scale = 0;
  for (const auto& [name, s] : kUnits)
    if (unit == name) scale = s;
  char* end = nullptr;
  const std::string number = text.substr(0, unit_at);
  const double v = std::strtod(number.c_str(), &end);
  if (number.empty() || end != number.c_str() + number.size() || scale == 0 || !(v * scale >= 1) ||
      v * scale > 1e18) {
    throw UsageError("--max-shard-size needs a size such as 5GB, 500MB, 4GiB or a number of bytes, got '" +
                     text + "'");
  }
  return static_cast<uint64_t>(std::llround(v * scale));
}

struct TokenizerFiles {
  std::vector<std::pair<std::string, std::string>> files;  // name, contents
  std::string description;
};

// The tokenizer files to write, checked against the model's config as its plugin read it: every id below
// vocab_size, bos/eos (when the config names them) special tokens of it.
TokenizerFiles choose_tokenizer(const std::string& arch, const std::string& option,
                                const eng_model_info& model, const fs::path& staging) {
  TokenizerFiles out;
  if (option == "none") return out;
  if (option.empty()) {
    std::optional<PresetTokenizerFiles> preset = preset_tokenizer_files(arch);
    if (!preset)
      fail("init-model has no tokenizer for architecture '{}'; pass --tokenizer DIR or none", arch);
    out.files = {{"tokenizer.json", std::string(preset->tokenizer_json)},
                 {"tokenizer_config.json", std::string(preset->tokenizer_config_json)}};
    out.description = "the built-in " + arch + " preset tokenizer";
  } else {
    const fs::path dir = option;
    if (!fs::is_regular_file(dir / "tokenizer.json"))
      fail("--tokenizer {}: no tokenizer.json there (pass a model folder with a tokenizer, or none)", option);
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
      if (fs::is_regular_file(dir / name))
        out.files.emplace_back(name, read_text(dir / name, "tokenizer file"));
    out.description = "the tokenizer of " + option;
  }
  // Check it through the engine's own reader, from the staging copy.
  for (const auto& [name, text] : out.files) io::write_file_atomic(staging / name, text);
  const data::Tokenizer tok = data::Tokenizer::from_file(staging);
  const auto n = static_cast<int64_t>(tok.vocab_size());
  std::string problem;
  if (n > model.vocab_size)
    problem = fmt::format("it has {} ids but the config's vocab_size is {}", n, model.vocab_size);
  for (const auto& [key, id] :
       {std::pair{"bos_token_id", model.bos_token_id}, {"eos_token_id", model.eos_token_id}}) {
    if (problem.empty() && id >= 0 && (id >= n || !tok.is_special(static_cast<int32_t>(id))))
      problem = fmt::format("the config's {} {} is not one of its special tokens", key, id);
  }
  if (!problem.empty()) {
    fail(
        "{} does not fit this config: {}. Pass --tokenizer DIR (a folder with this model's tokenizer.json, "
        "for Qwen2/Qwen2.5 e.g. the Qwen tokenizer) or --tokenizer none",
        out.description, problem);
  }
  return out;
}

// The config as written: FILE's text, with torch_dtype (or dtype) set to what the shards hold.
std::string config_for_dtype(const std::string& text, eng_dtype dtype) {
  const char* name = dtype == ENG_BF16 ? "bfloat16" : dtype == ENG_F16 ? "float16" : "float32";
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(text);
  const char* key = j.contains("dtype") && !j.contains("torch_dtype") ? "dtype" : "torch_dtype";
  if (j.contains(key) && j[key] == name) return text;
  j[key] = name;
  return j.dump(2) + "\n";
}

}  // namespace

int init_model_command(const std::vector<std::string>& args) {
  OptionArgs o = parse_option_args(args,
                                   {"--arch", "--preset", "--config", "--out", "--seed", "--dtype",
                                    "--tokenizer", "--max-shard-size", "--threads"},
                                   {});
  const std::string arch = o.require("--arch");
  const fs::path out = o.require("--out");
  if (o.has("--preset") == o.has("--config"))
    throw UsageError("init-model needs one of --preset tiny|small or --config FILE (a config.json)");
  const int64_t seed = o.get_int("--seed", 0);
  if (seed < 0) throw UsageError("--seed must be >= 0");
  const std::string dtype_name = o.get("--dtype", o.has("--config") ? "bf16" : "f32");
  eng_dtype dtype = ENG_F32;
  if (dtype_name == "bf16" || dtype_name == "bfloat16")
    dtype = ENG_BF16;
  else if (dtype_name == "f16" || dtype_name == "float16")
    dtype = ENG_F16;
  else if (dtype_name != "f32" && dtype_name != "float32")
    throw UsageError("--dtype must be bf16, f32 or f16, got '" + dtype_name + "'");
  session::InitialModelOptions write;
  write.dtype = dtype;
  write.max_shard_bytes = parse_byte_size(o.get("--max-shard-size", "5GB"));
  write.threads = static_cast<int>(o.get_int("--threads", 0));
  if (write.threads < 0) throw UsageError("--threads must be >= 0 (0: every core)");

  auto registry = discover_plugins();
  const plugins::PluginRecord& plugin = registry->require(ENG_KIND_MODEL, arch);
  std::string config, what;
  if (o.has("--preset")) {
    const std::string preset = o.require("--preset");
    const eng_model_vtable* vt = plugin.table<eng_model_vtable>();
    const char* text = vt->preset_config != nullptr ? vt->preset_config(preset.c_str()) : nullptr;
    if (text == nullptr) {
      throw UsageError("model plugin '" + arch + "' has no preset '" + preset +
                       "' (the built-in ones have tiny, small)");
    }
    config = text;
    what = "'" + preset + "'";
  } else {
    config = read_text(o.require("--config"), "--config");
    what = "config " + o.require("--config");
  }
  nlohmann::json config_json;
  try {
    config_json = nlohmann::json::parse(config);
  } catch (const nlohmann::json::exception& e) {
    fail("{} is not valid JSON: {}", what, e.what());
  }
  if (!config_json.is_object()) fail("{} is not a JSON object", what);
  if (config_json.contains("model_type") && config_json["model_type"] != arch) {
    fail("{} has model_type {}, not --arch {}", what, config_json["model_type"].dump(), arch);
  }

  // Never write over anything: DIR is new or an empty directory, checked before any work.
  std::error_code ec;
  const bool existed = fs::exists(fs::symlink_status(out, ec));
  if (existed && !(fs::is_directory(out) && fs::is_empty(out))) {
    fail(
        "--out {} already exists and is not an empty directory; choose a new directory (init-model never "
        "writes over files)",
        out.string());
  }
  const auto start = std::chrono::steady_clock::now();
  io::AtomicDirectory staging(out);
  rt::CpuDevice cpu;
  host::HostSession session(cpu, static_cast<uint64_t>(seed));
  // The plugin parses the config and declares the parameters (shapes only: nothing is allocated yet).
  session::ModelInstance model(session, plugin, config, R"({"dtype": "float32"})");
  const TokenizerFiles tokenizer =
      choose_tokenizer(arch, o.get("--tokenizer", ""), model.info(), staging.path());
  const session::WrittenModel written = session::write_initial_model(session.params(), staging.path(), write);
  io::write_file_atomic(staging.path() / "config.json", config_for_dtype(config, dtype));
  // The empty directory DIR is replaced by the model: rmdir(2) fails if anything appeared in it meanwhile.
  if (existed && !fs::remove(out, ec) && ec) {
    fail("--out {} is no longer an empty directory ({}); nothing was written there", out.string(),
         ec.message());
  }
  staging.commit();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t n = session.params().numel();
  std::cout << "wrote a " << arch << " " << what << " model (" << n << " parameters, "
            << rt::dtype_name(dtype) << ", seed " << seed << ", " << written.files.size()
            << (written.files.size() == 1 ? " file" : " shards") << ", "
            << (tokenizer.files.empty() ? "no tokenizer" : tokenizer.description) << ") to " << out.string()
            << " in " << fmt::format("{:.1f}", seconds) << " s\n";
  return kExitOk;
}

}  // namespace engine::cli
