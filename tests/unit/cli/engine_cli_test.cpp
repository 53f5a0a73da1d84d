// The `engine` executable end to end over the test plugins: exit codes, `plugins --json`, `validate`.
// GCC 12 reports a false -Wrestrict on "literal" + std::string at -O3 (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/abi/engine.h"
#include "tests/unit/cli/process.hpp"
#include "tests/unit/plugins/test_plugin_dirs.hpp"

namespace engine::cli {
namespace {

using engine::testing::run_process;
using engine::testing::test_data_dir;
using engine::testing::test_plugin_dir;

std::string engine_with(const std::string& plugin_path) {
  const char* bin = std::getenv("ENGINE_BINARY_DIR");
  return "ENGINE_PLUGIN_PATH='" + plugin_path + "' '" + std::string(bin ? bin : "build") + "/bin/engine'";
}
std::string engine() { return engine_with(test_plugin_dir("good").string()); }
// The entries of a `plugins --json` list that come from the test plugins (the installed folder of the build
// tree, searched after ENGINE_PLUGIN_PATH, also holds the real plugins).
size_t test_plugins_in(const nlohmann::json& list) {
  const std::string good = test_plugin_dir("good").string();
  size_t n = 0;
  for (const auto& p : list) n += p["path"].get<std::string>().rfind(good, 0) == 0;
  return n;
}
std::string recipe(const std::string& name) { return "'" + test_data_dir("recipe/" + name).string() + "'"; }

TEST(EngineCli, VersionPrintsTheAbiVersion) {
  auto r = run_process(engine() + " --version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("plugin ABI " + std::to_string(ENG_ABI_VERSION_MAJOR) + "." +
                          std::to_string(ENG_ABI_VERSION_MINOR)),
            std::string::npos)
      << r.output;
}

TEST(EngineCli, PluginsJsonHasExactlyTheDocumentedKeys) {
  auto r = run_process(engine() + " plugins --json", /*with_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto list = nlohmann::json::parse(r.output);
  ASSERT_TRUE(list.is_array());
  EXPECT_EQ(test_plugins_in(list), 9u);
  for (const auto& p : list) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : p.items()) keys.push_back(k);
    std::sort(keys.begin(), keys.end());
    EXPECT_EQ(keys, (std::vector<std::string>{"abi", "description", "kind", "name", "path", "version", "warnings"}));
    EXPECT_TRUE(p["warnings"].empty()) << p["name"] << " is built with the SDK and has no warning";
  }
  auto lora = std::find_if(list.begin(), list.end(), [](const auto& p) { return p["name"] == "fake_lora"; });
  ASSERT_NE(lora, list.end());
  EXPECT_EQ((*lora)["kind"], "peft");
  EXPECT_EQ((*lora)["abi"], "1.1");
}

TEST(EngineCli, PluginsDescribeShowsOptionsWithTypesDefaultsAndHelp) {
  auto r = run_process(engine() + " plugins describe fake_sgd");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("mode (string, default \"plain\", one of: plain | signed)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("update rule"), std::string::npos) << r.output;
  // The section's engine keys a recipe needs next to the options (optimizer.lr is required).
  EXPECT_NE(r.output.find("engine keys of the same section:\n    lr (number, required, minimum 0)"),
            std::string::npos)
      << r.output;
  auto missing = run_process(engine() + " plugins describe fake_sdg");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("did you mean 'fake_sgd'"), std::string::npos) << missing.output;
}

TEST(EngineCli, ValidateExitsZeroAndPrintsTheWiring) {
  auto r = run_process(engine() + " validate " + recipe("qlora.toml"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("peft       fake_lora 0.0.1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("recipe is valid"), std::string::npos);
}

TEST(EngineCli, ValidateMisspelledKeyExitsTwoNamingTheLine) {
  auto r = run_process(engine() + " validate " + recipe("bad/weight_decy.toml"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("weight_decy.toml:6:1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("did you mean 'weight_decay'"), std::string::npos) << r.output;
}

TEST(EngineCli, ValidateUnknownPluginListsThoseThatExist) {
  auto r = run_process(engine() + " validate " + recipe("bad/unknown_plugin.toml"));
  EXPECT_EQ(r.exit_code, 2);
  // the build's own plugins (adamw) are on the search path as well
  EXPECT_NE(r.output.find("fake_cuda_sgd, fake_sgd, fake_sharded_sgd)"), std::string::npos) << r.output;
}

TEST(EngineCli, ValidateWrongKindIsRefused) {
  auto r = run_process(engine() + " validate " + recipe("bad/wrong_kind.toml"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("'fake_lora' is a peft plugin"), std::string::npos) << r.output;
}

TEST(EngineCli, ValidateAppliesSetOverrides) {
  auto r = run_process(engine() + " validate " + recipe("bad/weight_decy.toml") +
                       " --set optimizer.weight_decy=1");
  EXPECT_EQ(r.exit_code, 2);
  auto ok = run_process(engine() + " validate " + recipe("bad/device.toml") + " --set train.device=cuda");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

TEST(EngineCli, RunValidatesFirstThenLoadsTheModel) {
  auto bad = run_process(engine() + " run " + recipe("bad/weight_decy.toml"));
  EXPECT_EQ(bad.exit_code, 2);
  // base.toml is valid but its model folder is a stub (a config.json without weights): the run gets past
  // validation and fails loading it
  auto r = run_process(engine() + " run " + recipe("base.toml"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("has no model.safetensors"), std::string::npos) << r.output;
}

TEST(EngineCli, ExportOfAMissingCheckpointSaysItDoesNotExist) {
  auto r =
      run_process(engine() + " export --checkpoint /nonexistent/checkpoint-5 --merged --out /nonexistent/x");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--checkpoint /nonexistent/checkpoint-5: no such directory"), std::string::npos)
      << r.output;
}

TEST(EngineCli, RunRefusesAMistypedResumeBeforeLoadingAnything) {
  // "latest" is neither auto, none nor a directory: a usage error, reported before the model load that would
  // fail on base.toml's stub model folder.
  auto r = run_process(engine() + " run " + recipe("base.toml") + " --resume latest");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--resume latest: no such directory (use auto, none, or a checkpoint directory)"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("config.json"), std::string::npos) << r.output;
}

TEST(EngineCli, UsageErrorsExitTwo) {
  EXPECT_EQ(run_process(engine() + " validate").exit_code, 2);
  EXPECT_EQ(run_process(engine() + " valdate x.toml").exit_code, 2);
  EXPECT_EQ(run_process(engine() + " --log-level loud plugins").exit_code, 2);
  EXPECT_EQ(run_process(engine() + " --log-level debug plugins").exit_code, 0);
  auto no_level = run_process(engine() + " plugins --log-level");  // the level forgotten at the end
  EXPECT_EQ(no_level.exit_code, 2);
  EXPECT_NE(no_level.output.find("--log-level needs a level"), std::string::npos) << no_level.output;
}

TEST(EngineCli, PluginsJsonStaysParseableWhenAFileIsRefused) {
  std::string path = test_plugin_dir("bad/abi_major").string() + ":" + test_plugin_dir("good").string();
  auto r = run_process(engine_with(path) + " plugins --json", /*with_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0);
  auto list = nlohmann::json::parse(r.output);  // throws (fails the test) if a warning leaked into stdout
  EXPECT_EQ(test_plugins_in(list), 9u);
}

TEST(EngineCli, BadPluginFilesAreReportedWithoutStoppingTheOthers) {
  std::string path = test_plugin_dir("bad/abi_major").string() + ":" + test_plugin_dir("good").string();
  auto r = run_process(engine_with(path) + " plugins");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("libfuture_sgd.so"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("plugin ABI 2.0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("fake_sgd"), std::string::npos) << r.output;
}

TEST(EngineCli, TokenizeEncodesStdinAndDecodesBack) {
  const std::string tok = "'" + test_data_dir("data/small_tokenizer.json").string() + "'";
  auto enc = run_process("printf 'hello world' | " + engine() + " tokenize --tokenizer " + tok, false);
  ASSERT_EQ(enc.exit_code, 0) << enc.output;
  auto ids = nlohmann::json::parse(enc.output);
  ASSERT_TRUE(ids.is_array());
  ASSERT_GT(ids.size(), 0u);
  auto dec =
      run_process("echo '" + ids.dump() + "' | " + engine() + " tokenize --decode --tokenizer " + tok, false);
  ASSERT_EQ(dec.exit_code, 0) << dec.output;
  EXPECT_EQ(dec.output, "hello world");
  EXPECT_EQ(run_process(engine() + " tokenize --tokenizer /nonexistent/tokenizer.json < /dev/null").exit_code,
            1);
}

}  // namespace
}  // namespace engine::cli
