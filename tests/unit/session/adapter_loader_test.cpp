// engine/session/adapter_loader.cpp: an adapter directory's adapter_config.json picks the PEFT plugin and
// becomes its options (following the plugin's schema); load_adapter creates, attaches and loads it.
#include "engine/session/adapter_loader.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"
#include "engine/plugins/plugin_search_path.hpp"
#include "engine/runtime/device.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "engine/session/model_loader.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// the options schema of tests/plugins/fake_peft.cpp
constexpr char kSchema[] = R"({"type": "object", "properties": {
  "r": {"type": "integer", "default": 8, "minimum": 1},
  "alpha": {"type": "number", "default": 16},
  "target_modules": {"type": "array", "items": {"type": "string"}, "default": ["proj"]}}})";

TEST(AdapterLoader, OptionsComeFromAdapterConfigUnderThePluginsNames) {
  json config = {{"peft_type", "LORA"},  {"r", 4},         {"lora_alpha", 8},
                 {"lora_dropout", 0.05}, {"bias", "none"}, {"target_modules", {"q_proj", "v_proj"}}};
  json options = json::parse(engine::session::peft_options_from_adapter_config(config, kSchema, "lora"));
  EXPECT_EQ(options, (json{{"r", 4}, {"alpha", 8}, {"target_modules", {"q_proj", "v_proj"}}}));
  // what the config lacks takes the schema's default
  json defaults = json::parse(
      engine::session::peft_options_from_adapter_config({{"peft_type", "LORA"}}, kSchema, "lora"));
  EXPECT_EQ(defaults, (json{{"r", 8}, {"alpha", 16}, {"target_modules", {"proj"}}}));
  // a value the schema refuses is an error naming the option
  try {
    engine::session::peft_options_from_adapter_config({{"r", "eight"}}, kSchema, "lora");
    FAIL();
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'r'"), std::string::npos) << e.what();
  }
}

TEST(AdapterLoader, PeftTypeNamesThePlugin) {
  EXPECT_EQ(engine::session::peft_plugin_name({{"peft_type", "LORA"}}, "x"), "lora");
  EXPECT_THROW(engine::session::peft_plugin_name({{"r", 8}}, "x"), engine::Error);
}

TEST(AdapterLoader, LoadAdapterCreatesAttachesAndInstallsThePeftPlugin) {
  const fs::path dir = fs::temp_directory_path() / ("engine_adapter_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "adapter_config.json")
      << R"({"peft_type": "FAKE_LORA", "r": 2, "target_modules": ["q_proj"]})";

  engine::rt::CpuDevice cpu(1);
  engine::host::HostSession session(cpu, 0);
  engine::plugins::PluginRegistry registry(engine::host::host_api());
  std::vector<fs::path> path = engine::plugins::default_plugin_search_path();
  path.push_back(ENGINE_TEST_PLUGIN_GOOD_DIR);
  registry.load_search_path(path);
  auto model = engine::session::load_model(
      session, registry, fs::path(std::getenv("ENGINE_TEST_DATA")) / "models" / "parity" / "qwen2_tied");
  const size_t base_params = session.params().size();
  const int64_t C = model->info().hidden_size;
  std::vector<int32_t> ids{3, 14, 15, 92}, pos{0, 1, 2, 3};
  auto logits = [&] {
    using engine::rt::Tensor;
    Tensor x = Tensor::from_host(engine::rt::Dims{1, 4}, ENG_I32, cpu, ids.data(), 16);
    Tensor p = Tensor::from_host(engine::rt::Dims{1, 4}, ENG_I32, cpu, pos.data(), 16);
    Tensor h = model->forward(x, p, Tensor(), nullptr, false);
    return model->logits(h.contiguous().view(engine::rt::Dims{4, C})).to_float_vector();
  };
  const std::vector<float> before = logits();
  auto peft = engine::session::load_adapter(session, registry, dir);
  fs::remove_all(dir);
  ASSERT_NE(peft, nullptr);
  EXPECT_EQ(session.peft(), peft.get());
  EXPECT_EQ(peft->name(), "fake_lora");
  ASSERT_GT(session.params().size(), base_params) << "the plugin declared its adapter parameters";
  EXPECT_EQ(session.params().at(base_params).decl.role, ENG_ROLE_ADAPTER);
  // the model's linears now route through the plugin: its (zero-initialised) shifts change nothing until set
  EXPECT_EQ(logits(), before);
  engine::rt::Param& shift = session.params().get("model.layers.0.self_attn.q_proj.weight.shift");
  engine::rt::ops::fill_(session.params().value(shift), 0.5);
  EXPECT_NE(logits(), before);

  // a directory without adapter_config.json is refused with the path
  try {
    engine::session::load_adapter(session, registry, dir / "missing");
    FAIL();
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("adapter_config.json"), std::string::npos) << e.what();
  }
}

}  // namespace
