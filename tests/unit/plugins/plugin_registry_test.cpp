#include "engine/plugins/plugin_registry.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "engine/core/error.hpp"
#include "tests/unit/plugins/test_plugin_dirs.hpp"

namespace engine::plugins {
namespace {

using engine::testing::test_plugin_dir;
namespace fs = std::filesystem;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const LoadProblem* problem_for(const PluginRegistry& r, const std::string& filename) {
  for (const LoadProblem& p : r.problems()) {
    if (p.path.filename() == filename) return &p;
  }
  return nullptr;
}

TEST(PluginRegistry, LoadsEveryTestPluginWithKindVersionAndAbi) {
  PluginRegistry r;
  r.load_search_path({test_plugin_dir("good")});
  EXPECT_TRUE(r.problems().empty());
  EXPECT_EQ(r.list().size(), 9u);
  const PluginRecord* sgd = r.find(ENG_KIND_OPTIMIZER, "fake_sgd");
  ASSERT_NE(sgd, nullptr);
  EXPECT_EQ(sgd->version, "0.0.1");
  EXPECT_EQ(sgd->abi_version, ENG_ABI_VERSION);
  EXPECT_EQ(sgd->description, "test optimizer (plain SGD)");
  EXPECT_TRUE(sgd->has(ENG_CAP_DEVICE_CPU));
  EXPECT_FALSE(sgd->has(ENG_OPT_CAP_SHARDED));
  EXPECT_TRUE(contains(sgd->options_schema_json, "\"weight_decay\""));
  EXPECT_TRUE(sgd->path.is_absolute());
  const auto* table = sgd->table<eng_optimizer_vtable>();
  EXPECT_EQ(table->struct_size, sizeof(eng_optimizer_vtable));
  EXPECT_NE(table->step, nullptr);
  EXPECT_EQ(r.names(ENG_KIND_PEFT), (std::vector<std::string>{"fake_ia3", "fake_lora"}));
  // The registry is keyed by (kind, name): a name of another kind is not found.
  EXPECT_EQ(r.find(ENG_KIND_PEFT, "fake_sgd"), nullptr);
}

TEST(PluginRegistry, OptionalEntriesAreNullWhenNotOverridden) {
  PluginRegistry r;
  r.load_search_path({test_plugin_dir("good")});
  const PluginRecord* ddp = r.find(ENG_KIND_PARALLEL, "fake_ddp");
  ASSERT_NE(ddp, nullptr);
  const auto* t = ddp->table<eng_parallel_vtable>();
  EXPECT_NE(t->setup, nullptr);
  EXPECT_NE(t->before_step, nullptr);  // overridden by the test strategy
  EXPECT_EQ(t->before_block, nullptr);
  EXPECT_EQ(t->grad_ready, nullptr);
  // A quantizer without save_state/load_state overrides leaves both entries NULL.
  const auto* q = r.find(ENG_KIND_QUANTIZER, "fake_nf4")->table<eng_quantizer_vtable>();
  EXPECT_EQ(q->save_state, nullptr);
  EXPECT_EQ(q->load_state, nullptr);
  EXPECT_NE(q->quantize, nullptr);
  // A model class with a static preset_config fills the optional entry.
  const auto* m = r.find(ENG_KIND_MODEL, "fake_model")->table<eng_model_vtable>();
  ASSERT_NE(m->preset_config, nullptr);
  EXPECT_NE(std::string(m->preset_config("tiny")).find("\"hidden_size\": 8"), std::string::npos);
  EXPECT_EQ(m->preset_config("huge"), nullptr);
}

TEST(PluginRegistry, RefusesAbiMajorTwoNamingFileBothVersionsAndFix) {
  PluginRegistry r;
  r.load_search_path({test_plugin_dir("bad/abi_major")});
  EXPECT_TRUE(r.list().empty());
  const LoadProblem* p = problem_for(r, "libfuture_sgd.so");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(contains(p->message, "'future_sgd'")) << p->message;
  EXPECT_TRUE(contains(p->message, "plugin ABI 2.0")) << p->message;
  EXPECT_TRUE(contains(p->message, "speaks ABI 1.0")) << p->message;
  EXPECT_TRUE(contains(p->message, "rebuild the plugin")) << p->message;
}

TEST(PluginRegistry, RefusesANewerMinorThanTheHostSpeaks) {
  PluginRegistry r;
  r.load_search_path({test_plugin_dir("bad/abi_minor")});
  const LoadProblem* p = problem_for(r, "libnewer_sgd.so");
  ASSERT_NE(p, nullptr);
  std::string newer = std::to_string(ENG_ABI_VERSION_MAJOR) + "." + std::to_string(ENG_ABI_VERSION_MINOR + 1);
  EXPECT_TRUE(contains(p->message, "plugin ABI " + newer)) << p->message;
  EXPECT_TRUE(contains(p->message, "upgrade the engine")) << p->message;
}

TEST(PluginRegistry, AHostWithANewerRangeAcceptsAnOlderMinor) {
  // A host speaking 1.0 to 1.1 loads the 1.1 plugin that a 1.0-only host refuses.
  PluginRegistry r(nullptr, ENG_ABI_MAKE_VERSION(1, 0), ENG_ABI_MAKE_VERSION(1, ENG_ABI_VERSION_MINOR + 1));
  r.load_search_path({test_plugin_dir("bad/abi_minor")});
  EXPECT_TRUE(r.problems().empty());
  EXPECT_NE(r.find(ENG_KIND_OPTIMIZER, "newer_sgd"), nullptr);
}

TEST(PluginRegistry, RefusesALibraryWithoutTheEntrySymbol) {
  PluginRegistry r;
  r.load_search_path({test_plugin_dir("bad/no_entry")});
  const LoadProblem* p = problem_for(r, "libno_entry.so");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(contains(p->message, "engine_plugin_negotiate")) << p->message;
}

TEST(PluginRegistry, ANonElfFileIsRefusedAndTheOthersStillLoad) {
  fs::path dir = fs::temp_directory_path() / ("engine_registry_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "libbroken.so") << "this is not a shared library\n";
  PluginRegistry r;
  r.load_search_path({dir, test_plugin_dir("bad/no_entry"), test_plugin_dir("good")});
  EXPECT_EQ(r.list().size(), 9u);
  const LoadProblem* p = problem_for(r, "libbroken.so");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(contains(p->message, "not a shared library")) << p->message;
  EXPECT_EQ(r.problems().size(), 2u);
  fs::remove_all(dir);
}

TEST(PluginRegistry, ADuplicateNameIsRefusedNamingBothFiles) {
  PluginRegistry r;
  r.load_search_path({test_plugin_dir("good"), test_plugin_dir("bad/duplicate")});
  ASSERT_EQ(r.problems().size(), 1u);
  const LoadProblem& p = r.problems()[0];
  EXPECT_EQ(p.path, test_plugin_dir("bad/duplicate") / "libfake_sgd.so");
  EXPECT_TRUE(contains(p.message, "duplicate optimizer plugin name 'fake_sgd'")) << p.message;
  EXPECT_TRUE(contains(p.message, (test_plugin_dir("good") / "libfake_sgd.so").filename().string()))
      << p.message;
  EXPECT_TRUE(contains(p.message, "good/libfake_sgd.so")) << p.message;
  // The first one found is kept.
  EXPECT_TRUE(contains(r.find(ENG_KIND_OPTIMIZER, "fake_sgd")->path.string(), "good/libfake_sgd.so"));
}

TEST(PluginRegistry, TheSameFolderTwiceLoadsEachFileOnce) {
  PluginRegistry r;
  r.load_search_path({test_plugin_dir("good"), test_plugin_dir("good") / "."});
  EXPECT_TRUE(r.problems().empty());
  EXPECT_EQ(r.list().size(), 9u);
}

TEST(PluginRegistry, RequireExplainsWrongKindAndUnknownNames) {
  PluginRegistry r;
  r.load_search_path({test_plugin_dir("good")});
  EXPECT_EQ(&r.require(ENG_KIND_OPTIMIZER, "fake_sgd"), r.find(ENG_KIND_OPTIMIZER, "fake_sgd"));
  try {
    r.require(ENG_KIND_OPTIMIZER, "fake_lora");
    FAIL() << "a peft plugin was accepted as an optimizer";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "'fake_lora' is a peft plugin")) << e.what();
    EXPECT_TRUE(contains(e.what(), "the [optimizer] slot needs an optimizer plugin")) << e.what();
  }
  std::string why = r.why_missing(ENG_KIND_OPTIMIZER, "fake_sdg");
  EXPECT_TRUE(contains(why, "did you mean 'fake_sgd'")) << why;
  EXPECT_TRUE(contains(why, "fake_cuda_sgd, fake_sgd, fake_sharded_sgd")) << why;
}

TEST(PluginRegistry, ASearchPathEntryMayNameOneFile) {
  PluginRegistry r;
  r.load_search_path({test_plugin_dir("good") / "libfake_sgd.so"});
  ASSERT_EQ(r.list().size(), 1u);
  EXPECT_EQ(r.list()[0]->name, "fake_sgd");
}

TEST(PluginRegistry, MissingFoldersAreSkippedQuietly) {
  PluginRegistry r;
  r.load_search_path({"/nonexistent/engine/plugins"});
  EXPECT_TRUE(r.list().empty());
  EXPECT_TRUE(r.problems().empty());
}

TEST(PluginRegistry, NoPluginOfAKindSaysWhereTheyAreSearched) {
  PluginRegistry r;
  r.load_search_path({"/nonexistent/engine/plugins"});
  std::string why = r.why_missing(ENG_KIND_MODEL, "qwen2");
  EXPECT_TRUE(contains(why, "no model plugin named 'qwen2' (none is installed: put the folder")) << why;
  EXPECT_TRUE(contains(why, "ENGINE_PLUGIN_PATH")) << why;
}

}  // namespace
}  // namespace engine::plugins
