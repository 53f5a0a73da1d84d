// engine/session/checkpoint_reader.cpp: streaming safetensors checkpoints into the parameter store,
// converting dtypes, and refusing checkpoints that do not match the declared parameters.
#include "engine/session/checkpoint_reader.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "engine/io/safetensors_checkpoint.hpp"
#include "engine/io/safetensors_writer.hpp"
#include "engine/runtime/device.hpp"
#include "engine/runtime/param_store.hpp"
#include "plugins/common/decoder_params.hpp"

namespace {

namespace fs = std::filesystem;
using engine::plugins::decoder::Arch;

std::string fixture(const std::string& name) {
  return std::string(std::getenv("ENGINE_TEST_DATA")) + "/models/parity/" + name;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Declares the decoder's parameters of the fixture's config into `store`, trainable (fp32) or frozen (dtype).
void declare(engine::rt::ParamStore& store, const std::string& name, Arch arch, bool trainable,
             eng_dtype dtype = ENG_F32) {
  auto config =
      engine::plugins::decoder::parse_decoder_config(read_text(fixture(name) + "/config.json"), arch);
  for (const auto& s : engine::plugins::decoder::decoder_param_specs(config)) {
    engine::rt::ParamDecl d;
    d.name = s.name;
    d.shape = engine::rt::Dims::from(s.shape);
    d.dtype = dtype;
    d.role = s.role;
    d.flags = trainable ? s.flags : (s.flags & ~ENG_PARAM_TRAINABLE);
    d.init = s.init;
    d.init_arg = s.init_arg;
    store.declare(d, s.block);
  }
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("engine_ckpt_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// Writes a copy of a checkpoint in bf16, optionally dropping one tensor and adding one.
void write_variant(const engine::io::SafetensorsCheckpoint& src, const fs::path& file,
                   const std::string& drop, const std::string& add, bool to_bf16) {
  engine::io::SafetensorsWriter w;
  std::vector<std::vector<uint16_t>> keep;
  for (const std::string& name : src.names()) {
    if (name == drop) continue;
    auto t = src.tensor(name);
    std::vector<int64_t> shape(t.shape.begin(), t.shape.end());
    if (!to_bf16) {
      w.add(name, ENG_F32, shape, std::span<const std::byte>(t.data, t.nbytes));
      continue;
    }
    std::vector<float> f(static_cast<size_t>(t.numel()));
    std::memcpy(f.data(), t.data, t.nbytes);
    keep.emplace_back(f.size());
    engine::f32_to_bf16(f.data(), keep.back().data(), f.size());
    w.add(name, ENG_BF16, shape, std::as_bytes(std::span<const uint16_t>(keep.back())));
  }
  if (!add.empty()) {
    std::vector<float> extra(4, 1.0f);
    w.add(add, ENG_F32, {4}, std::as_bytes(std::span<const float>(extra)));
  }
  w.write(file);
}

TEST(CheckpointReader, LoadsEveryParameterExactlyFromAnF32Checkpoint) {
  engine::rt::CpuDevice cpu(1);
  engine::rt::ParamStore store(cpu, 1);
  declare(store, "qwen2_untied", Arch::kQwen2, true);
  auto ckpt = engine::io::SafetensorsCheckpoint::open(fixture("qwen2_untied"));
  auto report = engine::session::load_checkpoint(store, ckpt);
  EXPECT_EQ(report.loaded.size(), store.size());
  EXPECT_TRUE(report.missing.empty());
  for (size_t i = 0; i < store.size(); ++i) {
    engine::rt::Param& p = store.at(i);
    auto t = ckpt.tensor(p.name());
    const engine::rt::Tensor& v = store.value(p);
    ASSERT_EQ(v.dtype(), ENG_F32);
    ASSERT_EQ(v.nbytes(), t.nbytes);
    EXPECT_EQ(std::memcmp(v.raw_data(), t.data, t.nbytes), 0) << p.name();
  }
}

TEST(CheckpointReader, ConvertsBf16ToFp32MastersAndKeepsBf16ForFrozenParameters) {
  TempDir dir("bf16");
  auto f32 = engine::io::SafetensorsCheckpoint::open(fixture("llama3_tied"));
  write_variant(f32, dir.path / "model.safetensors", "", "", true);
  auto bf16 = engine::io::SafetensorsCheckpoint::open(dir.path);

  engine::rt::CpuDevice cpu(1);
  engine::rt::ParamStore trainable(cpu, 1);
  declare(trainable, "llama3_tied", Arch::kLlama, true, ENG_BF16);
  engine::session::load_checkpoint(trainable, bf16);
  engine::rt::ParamStore frozen(cpu, 1);
  declare(frozen, "llama3_tied", Arch::kLlama, false, ENG_BF16);
  engine::session::load_checkpoint(frozen, bf16);

  // streaming: the device holds the parameters and nothing else (conversion goes through a bounded host chunk)
  engine::rt::CpuDevice counted(1);
  engine::rt::ParamStore streamed(counted, 1);
  declare(streamed, "llama3_tied", Arch::kLlama, true, ENG_BF16);
  engine::session::load_checkpoint(streamed, bf16);
  EXPECT_EQ(counted.memory_stats().peak_bytes, streamed.numel() * 4);

  const std::string name = "model.layers.1.mlp.down_proj.weight";
  auto src = bf16.tensor(name);
  std::vector<uint16_t> bits(static_cast<size_t>(src.numel()));
  std::memcpy(bits.data(), src.data, src.nbytes);
  const engine::rt::Tensor& master = trainable.value(trainable.get(name));
  ASSERT_EQ(master.dtype(), ENG_F32) << "trainable parameters keep fp32 masters";
  const float* m = master.data<float>();
  for (size_t i = 0; i < bits.size(); ++i) ASSERT_EQ(m[i], engine::bf16_to_f32(bits[i])) << i;
  const engine::rt::Tensor& stored = frozen.value(frozen.get(name));
  ASSERT_EQ(stored.dtype(), ENG_BF16);
  EXPECT_EQ(std::memcmp(stored.raw_data(), bits.data(), src.nbytes), 0);
}

TEST(CheckpointReader, MissingAndUnexpectedTensorsAreListedByName) {
  TempDir dir("names");
  auto f32 = engine::io::SafetensorsCheckpoint::open(fixture("qwen2_tied"));
  write_variant(f32, dir.path / "model.safetensors", "model.layers.1.self_attn.k_proj.bias",
                "model.layers.1.self_attn.rotary_emb.inv_freq", false);
  auto bad = engine::io::SafetensorsCheckpoint::open(dir.path);
  engine::rt::CpuDevice cpu(1);
  engine::rt::ParamStore store(cpu, 1);
  declare(store, "qwen2_tied", Arch::kQwen2, true);
  try {
    engine::session::load_checkpoint(store, bad);
    FAIL() << "a checkpoint with a missing tensor loaded";
  } catch (const engine::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.layers.1.self_attn.k_proj.bias"), std::string::npos) << m;
    EXPECT_NE(m.find("model.layers.1.self_attn.rotary_emb.inv_freq"), std::string::npos) << m;
  }
}

TEST(CheckpointReader, TiedModelsSkipAStoredLmHead) {
  TempDir dir("tied");
  auto f32 = engine::io::SafetensorsCheckpoint::open(fixture("qwen2_tied"));
  write_variant(f32, dir.path / "model.safetensors", "", "lm_head.weight", false);
  auto with_head = engine::io::SafetensorsCheckpoint::open(dir.path);
  engine::rt::CpuDevice cpu(1);
  engine::rt::ParamStore store(cpu, 1);
  declare(store, "qwen2_tied", Arch::kQwen2, true);
  EXPECT_THROW(engine::session::load_checkpoint(store, with_head), engine::Error);
  engine::session::CheckpointLoadOptions options;
  options.tied_lm_head = true;
  auto report = engine::session::load_checkpoint(store, with_head, options);
  EXPECT_EQ(report.loaded.size(), store.size());
}

// A checkpoint in two shards with model.safetensors.index.json, as the published multi-GB models are stored.
TEST(CheckpointReader, LoadsAShardedCheckpointThroughItsIndex) {
  TempDir dir("sharded");
  auto whole = engine::io::SafetensorsCheckpoint::open(fixture("llama2_untied"));
  engine::io::SafetensorsWriter first, second;
  nlohmann::json map = nlohmann::json::object();
  size_t i = 0;
  for (const std::string& name : whole.names()) {
    auto t = whole.tensor(name);
    const bool in_first = i++ % 2 == 0;
    (in_first ? first : second)
        .add(name, ENG_F32, std::vector<int64_t>(t.shape.begin(), t.shape.end()),
             std::span<const std::byte>(t.data, t.nbytes));
    map[name] = in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  first.write(dir.path / "model-00001-of-00002.safetensors");
  second.write(dir.path / "model-00002-of-00002.safetensors");
  std::ofstream(dir.path / "model.safetensors.index.json")
      << nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}}.dump();
  auto sharded = engine::io::SafetensorsCheckpoint::open(dir.path);
  ASSERT_EQ(sharded.shards().size(), 2u);

  engine::rt::CpuDevice cpu(1);
  engine::rt::ParamStore store(cpu, 1);
  declare(store, "llama2_untied", Arch::kLlama, false);
  auto report = engine::session::load_checkpoint(store, sharded);
  EXPECT_EQ(report.loaded.size(), store.size());
  for (size_t k = 0; k < store.size(); ++k) {
    engine::rt::Param& p = store.at(k);
    auto t = whole.tensor(p.name());
    EXPECT_EQ(std::memcmp(store.value(p).raw_data(), t.data, t.nbytes), 0) << p.name();
  }
}

TEST(CheckpointReader, AShapeMismatchNamesTheTensorAndBothShapes) {
  auto ckpt = engine::io::SafetensorsCheckpoint::open(fixture("qwen2_tied"));
  engine::rt::CpuDevice cpu(1);
  engine::rt::Tensor dst = engine::rt::Tensor::empty(engine::rt::Dims{96, 95}, ENG_F32, cpu);
  try {
    engine::session::read_tensor_into(ckpt.tensor("model.layers.0.self_attn.o_proj.weight"), dst, "test");
    FAIL();
  } catch (const engine::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("o_proj.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("(96, 96)"), std::string::npos) << m;
    EXPECT_NE(m.find("(96, 95)"), std::string::npos) << m;
  }
}

}  // namespace
