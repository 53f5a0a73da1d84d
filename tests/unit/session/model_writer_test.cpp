// engine/session/model_writer.cpp: write_initial_model cuts the declared parameters into transformers-style
// shards with an index, read back here with the engine's own safetensors reader, and writes the same bytes
// per tensor as write_model_safetensors after the store's own initialisation (f32 and bf16, any thread
// count).
#include "engine/session/model_writer.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/io/safetensors.hpp"
#include "engine/io/safetensors_checkpoint.hpp"
#include "engine/runtime/device.hpp"
#include "engine/runtime/param_store.hpp"
#include "plugins/common/decoder_params.hpp"

namespace {

namespace fs = std::filesystem;
using engine::plugins::decoder::Arch;

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// A small Qwen2 config: untied (lm_head written), q/k/v biases, odd sizes.
constexpr const char* kConfig = R"({"model_type": "qwen2", "hidden_size": 24, "intermediate_size": 50,
  "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 101,
  "tie_word_embeddings": false, "initializer_range": 0.05, "rms_norm_eps": 1e-6, "rope_theta": 10000.0})";

std::vector<engine::plugins::decoder::ParamSpec> specs(const char* config) {
  return engine::plugins::decoder::decoder_param_specs(
      engine::plugins::decoder::parse_decoder_config(config, Arch::kQwen2));
}

void declare(engine::rt::ParamStore& store, const char* config) {
  for (const auto& s : specs(config)) {
    engine::rt::ParamDecl d;
    d.name = s.name;
    d.shape = engine::rt::Dims::from(s.shape);
    d.role = s.role;
    d.flags = s.flags;
    d.init = s.init;
    d.init_arg = s.init_arg;
    store.declare(d, s.block);
  }
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("engine_model_writer_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

TEST(WriteInitialModel, ShardsAndIndexAsTransformersCutsThem) {
  TempDir dir("shards");
  engine::rt::CpuDevice cpu;
  engine::rt::ParamStore store(cpu, 3);
  declare(store, kConfig);
  engine::session::InitialModelOptions options;
  options.dtype = ENG_BF16;
  options.max_shard_bytes = 6000;  // embed/lm_head (101 x 24 bf16 = 4848 bytes) fit; layers need several
  options.threads = 2;
  const engine::session::WrittenModel w = engine::session::write_initial_model(store, dir.path, options);

  const auto want = specs(kConfig);
  uint64_t total = 0;
  for (const auto& s : want) total += static_cast<uint64_t>(engine::rt::Dims::from(s.shape).numel()) * 2;
  EXPECT_EQ(w.total_bytes, total);
  EXPECT_EQ(w.tensors, want.size());
  ASSERT_GT(w.files.size(), 2u);
  for (size_t k = 0; k < w.files.size(); ++k) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, w.files.size());
    EXPECT_EQ(w.files[k], name);
  }
  std::set<std::string> on_disk;
  for (const auto& e : fs::directory_iterator(dir.path)) on_disk.insert(e.path().filename().string());
  std::set<std::string> expected_files(w.files.begin(), w.files.end());
  expected_files.insert("model.safetensors.index.json");
  EXPECT_EQ(on_disk, expected_files) << "the shards and the index, nothing else (no temporary files)";

  // The index: total_size, every name once, each in the shard that holds it; the text as transformers
  // writes it (json.dumps(indent=2, sort_keys=True) + "\n").
  const std::string index_text = read_text(dir.path / "model.safetensors.index.json");
  const auto index = nlohmann::json::parse(index_text);
  EXPECT_EQ(index_text, index.dump(2) + "\n");
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  ASSERT_EQ(index["weight_map"].size(), want.size());

  // State-dict order, cut greedily: each shard holds a contiguous run of the declared parameters, within
  // max_shard_bytes, and the next parameter would not have fit.
  std::map<std::string, uint64_t> shard_size;
  size_t shard = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string file = index["weight_map"][want[i].name].get<std::string>();
    const uint64_t bytes = static_cast<uint64_t>(engine::rt::Dims::from(want[i].shape).numel()) * 2;
    if (file != w.files[shard]) {
      ++shard;
      ASSERT_LT(shard, w.files.size());
      ASSERT_EQ(file, w.files[shard]) << want[i].name << ": shards follow the declaration order";
      EXPECT_GT(shard_size[w.files[shard - 1]] + bytes, options.max_shard_bytes)
          << want[i].name << " would fit";
    }
    shard_size[file] += bytes;
  }
  for (const auto& [file, bytes] : shard_size) EXPECT_LE(bytes, options.max_shard_bytes) << file;

  // The engine's reader: names, shapes, dtypes; each tensor in the file the index names.
  const auto ckpt = engine::io::SafetensorsCheckpoint::open(dir.path);
  ASSERT_TRUE(ckpt.index_path().has_value());
  EXPECT_TRUE(ckpt.unindexed_tensors().empty());
  ASSERT_EQ(ckpt.names().size(), want.size());
  for (const auto& s : want) {
    const auto t = ckpt.tensor(s.name);
    EXPECT_EQ(t.dtype_name, "BF16") << s.name;
    EXPECT_EQ(std::vector<int64_t>(t.shape.begin(), t.shape.end()), s.shape) << s.name;
    EXPECT_EQ(fs::path(ckpt.shard_of(s.name).path()).filename().string(),
              index["weight_map"][s.name].get<std::string>());
  }
  for (const auto& f : ckpt.shards()) EXPECT_EQ(f.metadata().at("format"), "pt") << f.path();
}

// Every tensor's bytes equal those of the store's own initialisation written by write_model_safetensors.
TEST(WriteInitialModel, BytesEqualTheStoresOwnInitialisation) {
  for (const eng_dtype dtype : {ENG_F32, ENG_BF16}) {
    for (const int threads : {1, 3}) {
      SCOPED_TRACE(std::string(engine::rt::dtype_name(dtype)) + " threads " + std::to_string(threads));
      TempDir dir("bytes");
      engine::rt::CpuDevice cpu;
      engine::rt::ParamStore streamed(cpu, 11), materialised(cpu, 11);
      declare(streamed, kConfig);
      declare(materialised, kConfig);
      engine::session::InitialModelOptions options;
      options.dtype = dtype;
      options.threads = threads;
      const auto w = engine::session::write_initial_model(streamed, dir.path, options);
      ASSERT_EQ(w.files, std::vector<std::string>{"model.safetensors"}) << "one shard below 5GB: no index";
      EXPECT_FALSE(fs::exists(dir.path / "model.safetensors.index.json"));
      fs::create_directories(dir.path / "ref");
      engine::session::write_model_safetensors(materialised, dir.path / "ref" / "model.safetensors", dtype);
      EXPECT_EQ(read_text(dir.path / "model.safetensors"), read_text(dir.path / "ref" / "model.safetensors"))
          << "the same file, byte for byte";
      // and the values are the declared distributions
      const auto file = engine::io::SafetensorsFile::open(dir.path / "model.safetensors");
      const auto embed = file.tensor("model.embed_tokens.weight");
      EXPECT_EQ(embed.dtype_name, dtype == ENG_F32 ? "F32" : "BF16");
    }
  }
}

TEST(WriteInitialModel, RefusesParametersThatHoldValuesAndBadOptions) {
  TempDir dir("refuse");
  engine::rt::CpuDevice cpu;
  engine::rt::ParamStore store(cpu, 0);
  declare(store, kConfig);
  engine::session::InitialModelOptions options;
  options.dtype = ENG_I32;
  EXPECT_THROW(engine::session::write_initial_model(store, dir.path, options), engine::Error);
  options.dtype = ENG_BF16;
  options.max_shard_bytes = 0;
  EXPECT_THROW(engine::session::write_initial_model(store, dir.path, options), engine::Error);
  store.value(store.get("model.norm.weight"));  // materialised: its value is no longer just the declaration
  try {
    engine::session::write_initial_model(store, dir.path, {});
    ADD_FAILURE() << "a materialised parameter was accepted";
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.norm.weight"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_empty(dir.path)) << "refused before writing anything";
}

}  // namespace
