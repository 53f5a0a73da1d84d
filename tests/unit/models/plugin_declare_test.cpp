// The llama and qwen2 plugins loaded as the engine loads them (plugin registry, HostSession, the real host
// table): the parameters they declare for the published Qwen2.5-7B-Instruct and Llama-3.1-8B configs are the
// published checkpoints' tensor names with their shapes (declaring is lazy: no memory is allocated), each
// layer's parameters carry their block index, and the plugins' info and presets are consistent.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"
#include "engine/host/host_session.hpp"
#include "engine/plugins/plugin_registry.hpp"
#include "engine/plugins/plugin_search_path.hpp"
#include "engine/runtime/device.hpp"
#include "engine/session/model_loader.hpp"

namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  EXPECT_TRUE(f.good()) << p;
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

fs::path data(const std::string& name) { return fs::path(std::getenv("ENGINE_TEST_DATA")) / "models" / name; }

struct Engine {
  engine::rt::CpuDevice cpu{1};
  engine::host::HostSession session{cpu, 0};
  engine::plugins::PluginRegistry registry{engine::host::host_api()};
  Engine() { registry.load_search_path(engine::plugins::default_plugin_search_path()); }
};

void expect_declares_the_published_checkpoint(const std::string& plugin, const std::string& dir) {
  Engine e;
  engine::session::ModelInstance model(e.session, e.registry.require(ENG_KIND_MODEL, plugin),
                                       read_file(data(dir) / "config.json"), R"({"dtype": "bfloat16"})");
  auto index = nlohmann::json::parse(read_file(data(dir) / "model.safetensors.index.json"));
  std::set<std::string> published;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it)
    published.insert(it.key());
  std::set<std::string> declared;
  int64_t bytes = 0;
  engine::rt::ParamStore& store = e.session.params();
  for (size_t i = 0; i < store.size(); ++i) {
    const engine::rt::Param& p = store.at(i);
    declared.insert(p.name());
    bytes += p.shape().numel() * 2;
    EXPECT_EQ(p.decl.dtype, ENG_BF16) << p.name();
    // model.layers.<i>.* belong to block i, everything else to no block
    const std::string prefix = "model.layers.";
    int expected_block = -1;
    if (p.name().rfind(prefix, 0) == 0) expected_block = std::stoi(p.name().substr(prefix.size()));
    EXPECT_EQ(p.block, expected_block) << p.name();
  }
  EXPECT_EQ(declared, published);
  EXPECT_EQ(bytes, index["metadata"]["total_size"].get<int64_t>());
  EXPECT_EQ(e.cpu.memory_stats().current_bytes, 0) << "declaring must not allocate the weights";
  EXPECT_EQ(std::string(model.info().lm_head_param), "lm_head.weight");
}

TEST(PluginDeclare, Qwen2DeclaresQwen25_7BInstructExactly) {
  expect_declares_the_published_checkpoint("qwen2", "qwen2.5-7b-instruct");
}

TEST(PluginDeclare, LlamaDeclaresLlama31_8BExactly) {
  expect_declares_the_published_checkpoint("llama", "llama-3.1-8b");
}

TEST(PluginDeclare, InfoRolesAndFlags) {
  Engine e;
  engine::session::ModelInstance model(e.session, e.registry.require(ENG_KIND_MODEL, "qwen2"),
                                       read_file(data("qwen2.5-7b-instruct") / "config.json"));
  const eng_model_info& info = model.info();
  EXPECT_EQ(info.n_layers, 28);
  EXPECT_EQ(info.vocab_size, 152064);
  EXPECT_EQ(info.hidden_size, 3584);
  EXPECT_EQ(info.n_heads, 28);
  EXPECT_EQ(info.n_kv_heads, 4);
  EXPECT_EQ(info.head_dim, 128);
  EXPECT_EQ(info.tie_word_embeddings, 0);
  EXPECT_EQ(info.eos_token_id, 151645);
  EXPECT_EQ(info.bos_token_id, 151643);
  EXPECT_EQ(std::string(info.architecture), "Qwen2ForCausalLM");
  engine::rt::ParamStore& store = e.session.params();
  const engine::rt::Param& q = store.get("model.layers.3.self_attn.q_proj.weight");
  EXPECT_EQ(q.decl.role, ENG_ROLE_LINEAR);
  EXPECT_EQ(q.decl.dtype, ENG_F32) << "auto dtype is fp32 on the CPU";
  EXPECT_TRUE(q.flags & ENG_PARAM_TRAINABLE);
  EXPECT_FALSE(q.decl.flags & ENG_PARAM_NO_DECAY);
  const engine::rt::Param& bias = store.get("model.layers.3.self_attn.q_proj.bias");
  EXPECT_EQ(bias.decl.role, ENG_ROLE_BIAS);
  EXPECT_TRUE(bias.decl.flags & ENG_PARAM_NO_DECAY);
  const engine::rt::Param& norm = store.get("model.layers.3.post_attention_layernorm.weight");
  EXPECT_EQ(norm.decl.role, ENG_ROLE_NORM);
  EXPECT_TRUE(norm.decl.flags & ENG_PARAM_NO_DECAY);
  EXPECT_EQ(norm.decl.init, ENG_INIT_ONES);
  EXPECT_EQ(store.get("model.embed_tokens.weight").decl.role, ENG_ROLE_EMBEDDING);
  EXPECT_EQ(store.find("model.layers.3.self_attn.o_proj.bias"), nullptr);
}

TEST(PluginDeclare, PresetsParseAndUnknownOnesAreNull) {
  Engine e;
  for (const std::string name : {"qwen2", "llama"}) {
    const auto& record = e.registry.require(ENG_KIND_MODEL, name);
    EXPECT_TRUE(record.has(ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA | ENG_MODEL_CAP_KV_CACHE |
                           ENG_MODEL_CAP_PACKING));
    const eng_model_vtable* vt = record.table<eng_model_vtable>();
    ASSERT_NE(vt->preset_config, nullptr);
    EXPECT_EQ(vt->preset_config("huge"), nullptr);
    for (const char* preset : {"tiny", "small"}) {
      const char* text = vt->preset_config(preset);
      ASSERT_NE(text, nullptr);
      Engine fresh;
      engine::session::ModelInstance m(fresh.session, fresh.registry.require(ENG_KIND_MODEL, name), text);
      EXPECT_EQ(m.info().vocab_size, 512) << "the vocabulary of the tokenizer init-model writes";
      EXPECT_EQ(m.info().tie_word_embeddings, 1);
      EXPECT_EQ(std::string(m.info().lm_head_param), "model.embed_tokens.weight");
    }
  }
}

TEST(PluginDeclare, AConfigOfTheOtherArchitectureIsRefusedThroughTheAbiWithItsMessage) {
  Engine e;
  try {
    engine::session::ModelInstance m(e.session, e.registry.require(ENG_KIND_MODEL, "qwen2"),
                                     read_file(data("llama-3.1-8b") / "config.json"));
    FAIL() << "the qwen2 plugin accepted a llama config";
  } catch (const engine::Error& err) {
    EXPECT_NE(std::string(err.what()).find("use the 'llama' model plugin"), std::string::npos) << err.what();
  }
  try {
    engine::session::ModelInstance m(e.session, e.registry.require(ENG_KIND_MODEL, "llama"),
                                     read_file(data("llama-3.1-8b") / "config.json"), R"({"dtype": "fp8"})");
    FAIL() << "an unknown dtype option was accepted";
  } catch (const engine::Error& err) {
    EXPECT_NE(std::string(err.what()).find("dtype"), std::string::npos) << err.what();
  }
}

}  // namespace
