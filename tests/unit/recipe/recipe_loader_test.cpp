#include "engine/recipe/recipe_loader.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "engine/recipe/recipe_wiring.hpp"
#include "tests/unit/plugins/test_plugin_dirs.hpp"

namespace engine::recipe {
namespace {

using engine::testing::test_data_dir;
using engine::testing::test_plugin_dir;
namespace fs = std::filesystem;

class RecipeLoader : public ::testing::Test {
 protected:
  void SetUp() override { registry_.load_search_path({test_plugin_dir("good")}); }

  // The diagnostics of a recipe that must fail.
  std::vector<Diagnostic> errors(const std::string& file, const std::vector<std::string>& sets = {}) {
    try {
      fs::path path = fs::path(file).is_absolute() ? fs::path(file) : test_data_dir("recipe/" + file);
      load_recipe(path, sets, registry_);
    } catch (const RecipeError& e) {
      return e.diagnostics();
    }
    ADD_FAILURE() << file << " was accepted";
    return {};
  }
  static bool any(const std::vector<Diagnostic>& ds, const std::string& part) {
    for (const Diagnostic& d : ds) {
      if (d.str().find(part) != std::string::npos) return true;
    }
    return false;
  }
  static std::string all(const std::vector<Diagnostic>& ds) {
    std::string s;
    for (const Diagnostic& d : ds) s += d.str() + "\n";
    return s;
  }

  plugins::PluginRegistry registry_;
};

TEST_F(RecipeLoader, ValidRecipeResolvesPluginsDefaultsAndPaths) {
  Recipe r = load_recipe(test_data_dir("recipe/base.toml"), {}, registry_);
  EXPECT_EQ(r.model.plugin, "fake_model");
  ASSERT_NE(r.model.record, nullptr);
  EXPECT_EQ(r.model.record->kind, ENG_KIND_MODEL);
  EXPECT_EQ(r.model.path, fs::absolute(test_data_dir("recipe/model")).lexically_normal());
  EXPECT_EQ(r.model.dtype, "bf16");
  EXPECT_EQ(r.optimizer.lr, 0.001);
  EXPECT_EQ(r.optimizer.weight_decay, 0.01);
  EXPECT_FALSE(r.peft.present());
  EXPECT_EQ(r.scheduler.kind, "constant");
  EXPECT_EQ(r.train.max_steps, 10);
  EXPECT_EQ(r.train.micro_batch_size, 1);
  EXPECT_EQ(r.train.device, "cpu");
  EXPECT_EQ(r.train.max_nonfinite_steps, 10);
  EXPECT_EQ(r.log.every, 1);
  // The plugin's options carry the engine keys and the plugin's defaults.
  auto opts = nlohmann::json::parse(r.optimizer.options_json);
  EXPECT_EQ(opts["lr"], 0.001);
  EXPECT_EQ(opts["mode"], "plain");
  EXPECT_EQ(opts["buckets"], 4);
  EXPECT_FALSE(opts.contains("plugin"));
}

TEST_F(RecipeLoader, MisspelledKeyNamesTheLineAndSuggests) {
  auto ds = errors("bad/weight_decy.toml");
  ASSERT_EQ(ds.size(), 1u) << all(ds);
  EXPECT_NE(ds[0].location.find("weight_decy.toml:6:1"), std::string::npos) << ds[0].location;
  EXPECT_NE(ds[0].message.find("did you mean 'weight_decay'"), std::string::npos) << ds[0].message;
}

TEST_F(RecipeLoader, UnknownPluginListsThoseOfItsKind) {
  auto ds = errors("bad/unknown_plugin.toml");
  ASSERT_EQ(ds.size(), 1u) << all(ds);
  EXPECT_NE(ds[0].location.find("unknown_plugin.toml:5:1"), std::string::npos);
  EXPECT_TRUE(any(ds, "no optimizer plugin named 'fake_sdg'; did you mean 'fake_sgd'?"));
  EXPECT_TRUE(any(ds, "available optimizer plugins: fake_cuda_sgd, fake_sgd, fake_sharded_sgd"));
}

TEST_F(RecipeLoader, PluginOfTheWrongKindIsRefused) {
  auto ds = errors("bad/wrong_kind.toml");
  EXPECT_TRUE(any(ds, "'fake_lora' is a peft plugin")) << all(ds);
  EXPECT_TRUE(any(ds, "the [optimizer] slot needs an optimizer plugin")) << all(ds);
}

TEST_F(RecipeLoader, ReportsEveryErrorNotJustTheFirst) {
  auto ds = errors("bad/many_errors.toml");
  EXPECT_TRUE(any(ds, "optimizer.lr must be a number, got the string \"fast\"")) << all(ds);
  EXPECT_TRUE(any(ds, "train.micro_batch_size must be at least 1")) << all(ds);
  EXPECT_TRUE(any(ds, "train.device must be one of: cpu, cuda, auto")) << all(ds);
  EXPECT_TRUE(any(ds, "unknown key 'knid' in [scheduler]; did you mean 'kind'?")) << all(ds);
  EXPECT_TRUE(any(ds, "unknown section [dta]; did you mean 'data'?")) << all(ds);
  EXPECT_EQ(ds.size(), 5u) << all(ds);
  // In the order a reader meets them.
  ASSERT_FALSE(ds.empty());
  EXPECT_NE(ds.front().location.find("many_errors.toml:5:1"), std::string::npos) << all(ds);
  EXPECT_NE(ds.back().location.find("many_errors.toml:14:"), std::string::npos) << all(ds);
}

TEST_F(RecipeLoader, PluginOptionsAreCheckedAgainstThePluginSchema) {
  auto ds = errors("bad/plugin_options.toml");
  EXPECT_TRUE(any(ds, "optimizer.mode must be one of: plain, signed; got 'signd'; did you mean 'signed'?"))
      << all(ds);
  EXPECT_TRUE(any(ds, "optimizer.buckets must be at least 1")) << all(ds);
  EXPECT_TRUE(any(ds, "optimizer.betas item 0 must be a number")) << all(ds);
  EXPECT_TRUE(any(ds, "unknown key 'nesterv' in [optimizer]; did you mean 'nesterov'?")) << all(ds);
  EXPECT_TRUE(
      any(ds,
          "known keys of the engine and of optimizer plugin 'fake_sgd': plugin, lr, weight_decay, betas, "
          "buckets, mode, nesterov"))
      << all(ds);
}

TEST_F(RecipeLoader, FrozenOnlyQuantizerWithoutPeftIsRefusedWithAnExplanation) {
  auto ds = errors("bad/quantized_full_finetune.toml");
  ASSERT_EQ(ds.size(), 1u) << all(ds);
  EXPECT_NE(ds[0].message.find("full fine-tuning"), std::string::npos);
  EXPECT_NE(ds[0].message.find("Add a [peft] section"), std::string::npos);
  EXPECT_NE(ds[0].location.find("quantized_full_finetune.toml:5:1"), std::string::npos);
}

TEST_F(RecipeLoader, PeftWithoutQuantizedBaseSupportIsRefusedOnAQuantizedModel) {
  auto ds = errors("bad/peft_without_quantized_base.toml");
  ASSERT_EQ(ds.size(), 1u) << all(ds);
  EXPECT_TRUE(any(ds, "'fake_ia3' does not support a quantized base weight")) << all(ds);
}

TEST_F(RecipeLoader, ShardingStrategyNeedsAShardedOptimizer) {
  auto ds = errors("bad/sharded_without_sharded_optimizer.toml");
  ASSERT_EQ(ds.size(), 1u) << all(ds);
  EXPECT_TRUE(any(ds, "optimizer 'fake_sgd' cannot step local shards")) << all(ds);
}

TEST_F(RecipeLoader, PluginWithoutTheDeviceCapabilityIsRefused) {
  auto ds = errors("bad/device.toml");
  ASSERT_EQ(ds.size(), 1u) << all(ds);
  EXPECT_TRUE(any(ds, "optimizer plugin 'fake_cuda_sgd' does not run on cpu (it runs on cuda)")) << all(ds);
  // With cuda it is fine.
  Recipe r = load_recipe(test_data_dir("recipe/bad/device.toml"), {"train.device=cuda"}, registry_);
  EXPECT_EQ(r.train.device, "cuda");
}

TEST_F(RecipeLoader, IncludeOverridesTheBaseAndAValidComboPasses) {
  Recipe r = load_recipe(test_data_dir("recipe/qlora.toml"), {}, registry_);
  EXPECT_EQ(r.quantizer.plugin, "fake_nf4");
  EXPECT_EQ(r.peft.plugin, "fake_lora");
  EXPECT_EQ(r.parallel.plugin, "fake_fsdp");
  EXPECT_EQ(r.optimizer.plugin, "fake_sharded_sgd");
  EXPECT_EQ(r.optimizer.lr, 0.0002);          // overridden
  EXPECT_EQ(r.optimizer.weight_decay, 0.01);  // inherited from base.toml
  EXPECT_EQ(r.scheduler.kind, "cosine");
  auto peft = nlohmann::json::parse(r.peft.options_json);
  EXPECT_EQ(peft["r"], 4);
  EXPECT_EQ(peft["alpha"], 16);
}

TEST_F(RecipeLoader, SetOverridesWithTypeChecking) {
  Recipe r = load_recipe(test_data_dir("recipe/base.toml"),
                         {"train.max_steps=3", "optimizer.lr=0.5", "data.packing=true",
                          "optimizer.mode=signed", "peft.plugin=fake_lora", "peft.r=2"},
                         registry_);
  EXPECT_EQ(r.train.max_steps, 3);
  EXPECT_EQ(r.optimizer.lr, 0.5);
  EXPECT_TRUE(r.data.packing);
  EXPECT_EQ(nlohmann::json::parse(r.optimizer.options_json)["mode"], "signed");
  EXPECT_EQ(r.peft.plugin, "fake_lora");
  EXPECT_EQ(nlohmann::json::parse(r.peft.options_json)["r"], 2);

  auto ds =
      errors("base.toml", {"train.max_steps=ten", "optimizer.weight_decy=0.1", "train", "trian.seed=1"});
  EXPECT_TRUE(any(ds, "--set train.max_steps=ten: train.max_steps (integer): 'ten' is not an integer"))
      << all(ds);
  EXPECT_TRUE(any(ds,
                  "--set optimizer.weight_decy=0.1: unknown key 'weight_decy' in [optimizer]; did you mean "
                  "'weight_decay'?"))
      << all(ds);
  EXPECT_TRUE(any(ds, "--set train: expected section.key=value")) << all(ds);
  EXPECT_TRUE(any(ds, "unknown section [trian]; did you mean 'train'?")) << all(ds);
}

TEST_F(RecipeLoader, ActivationCheckpointingTakesABoolABlockCountOrAuto) {
  auto blocks = [&](const std::string& v) {
    Recipe r = load_recipe(test_data_dir("recipe/base.toml"), {"train.activation_checkpointing=" + v}, registry_);
    return std::make_tuple(r.train.activation_checkpointing, r.train.checkpoint_blocks, r.train.checkpoint_auto);
  };
  EXPECT_EQ(blocks("true"), std::make_tuple(true, int64_t(-1), false));
  EXPECT_EQ(blocks("false"), std::make_tuple(false, int64_t(0), false));
  EXPECT_EQ(blocks("12"), std::make_tuple(true, int64_t(12), false));
  EXPECT_EQ(blocks("0"), std::make_tuple(false, int64_t(0), false));
  EXPECT_EQ(blocks("auto"), std::make_tuple(true, int64_t(0), true));
  Recipe r = load_recipe(test_data_dir("recipe/base.toml"), {"train.max_memory=19.5"}, registry_);
  EXPECT_EQ(r.train.max_memory_gib, 19.5);
  for (const char* bad : {"-3", "sometimes", "1.5"}) {
    auto ds = errors("base.toml", {std::string("train.activation_checkpointing=") + bad});
    EXPECT_TRUE(any(ds, "train.activation_checkpointing must be true, false, a number of blocks (0 or more) or "
                        "\"auto\""))
        << bad << ": " << all(ds);
  }
  EXPECT_TRUE(any(errors("base.toml", {"train.max_memory=-1"}), "train.max_memory")) ;
}

TEST_F(RecipeLoader, RecomputeCheapOpsNeedsBlocksThatKeepTheirActivations) {
  EXPECT_TRUE(load_recipe(test_data_dir("recipe/base.toml"),
                          {"train.activation_checkpointing=auto", "train.recompute_cheap_ops=true"}, registry_)
                  .train.recompute_cheap_ops);
  EXPECT_FALSE(load_recipe(test_data_dir("recipe/base.toml"), {}, registry_).train.recompute_cheap_ops);
  auto ds = errors("base.toml", {"train.activation_checkpointing=true", "train.recompute_cheap_ops=true"});
  EXPECT_TRUE(any(ds, "train.recompute_cheap_ops = true acts on blocks that keep their activations")) << all(ds);
}

TEST_F(RecipeLoader, KeepAttentionNeedsCheckpointedBlocks) {
  EXPECT_TRUE(load_recipe(test_data_dir("recipe/base.toml"),
                          {"train.activation_checkpointing=true", "train.keep_attention=true"}, registry_)
                  .train.keep_attention);
  EXPECT_FALSE(load_recipe(test_data_dir("recipe/base.toml"), {}, registry_).train.keep_attention);
  auto ds = errors("base.toml", {"train.keep_attention=true"});
  EXPECT_TRUE(any(ds, "train.keep_attention = true keeps the attention results of checkpointed blocks")) << all(ds);
}

TEST_F(RecipeLoader, OffloadKeptBlocksNeedsKeptBlocksAndAGpu) {
  EXPECT_EQ(load_recipe(test_data_dir("recipe/base.toml"),
                        {"train.activation_checkpointing=auto", "train.offload_kept_blocks=11", "train.device=cuda"},
                        registry_)
                .train.offload_kept_blocks,
            11);
  EXPECT_EQ(load_recipe(test_data_dir("recipe/base.toml"), {}, registry_).train.offload_kept_blocks, 0);
  auto ds = errors("base.toml", {"train.activation_checkpointing=true", "train.offload_kept_blocks=2",
                                 "train.device=cuda"});
  EXPECT_TRUE(any(ds, "train.offload_kept_blocks moves the activations of blocks that keep them")) << all(ds);
  ds = errors("base.toml", {"train.offload_kept_blocks=2", "train.device=cpu"});
  EXPECT_TRUE(any(ds, "train.offload_kept_blocks with train.device = \"cpu\"")) << all(ds);
  ds = errors("base.toml", {"train.offload_kept_blocks=-1"});
  EXPECT_TRUE(any(ds, "offload_kept_blocks")) << all(ds);
}

TEST_F(RecipeLoader, OffloadActivationsNeedsCheckpointedBlocksAndAGpu) {
  Recipe r = load_recipe(test_data_dir("recipe/base.toml"),
                         {"train.activation_checkpointing=true", "train.offload_activations=true",
                          "train.device=cuda"},
                         registry_);
  EXPECT_TRUE(r.train.offload_activations);
  EXPECT_FALSE(load_recipe(test_data_dir("recipe/base.toml"), {}, registry_).train.offload_activations);
  auto ds = errors("base.toml", {"train.activation_checkpointing=false", "train.offload_activations=true"});
  EXPECT_TRUE(any(ds, "train.offload_activations = true moves the inputs that checkpointed blocks keep")) << all(ds);
  ds = errors("base.toml", {"train.activation_checkpointing=true", "train.offload_activations=true",
                            "train.device=cpu"});
  EXPECT_TRUE(any(ds, "train.offload_activations = true with train.device = \"cpu\"")) << all(ds);
  ds = errors("base.toml", {"train.activation_checkpointing=true", "train.offload_activations=1",
                            "train.device=cuda"});
  EXPECT_TRUE(any(ds, "offload_activations")) << all(ds);
}

TEST_F(RecipeLoader, DeterministicIsTheDefaultAndFalseIsForCudaOnly) {
  EXPECT_TRUE(load_recipe(test_data_dir("recipe/base.toml"), {}, registry_).train.deterministic);
  EXPECT_FALSE(load_recipe(test_data_dir("recipe/base.toml"), {"train.deterministic=false", "train.device=cuda"},
                           registry_)
                   .train.deterministic);
  auto ds = errors("base.toml", {"train.deterministic=false", "train.device=cpu"});
  EXPECT_TRUE(any(ds, "train.deterministic = false with train.device = \"cpu\"")) << all(ds);
  ds = errors("base.toml", {"train.deterministic=1"});
  EXPECT_TRUE(any(ds, "deterministic")) << all(ds);
}

TEST_F(RecipeLoader, MissingDataFilesSayWhatRelativePathsAreRelativeTo) {
  // A --set path is relative to the current directory, not to the recipe: the message must not send the user
  // to the recipe's folder only.
  auto ds = errors("base.toml", {"data.train=no_such_train.jsonl", "data.eval=no_such_eval.jsonl"});
  EXPECT_TRUE(any(ds,
                  "no_such_train.jsonl does not exist; relative paths are relative to the recipe file that "
                  "sets them (--set: to the current directory)"))
      << all(ds);
  EXPECT_TRUE(any(ds, "no_such_eval.jsonl does not exist; relative paths are relative")) << all(ds);
}

TEST_F(RecipeLoader, HubIdsAndSourceListsWithCountsAndWeights) {
  // A path that exists wins over a Hub id; org/name that names nothing locally is a Hub id, with @revision
  // and #N; a list mixes files and tables.
  const std::string file = fs::absolute(test_data_dir("recipe/train.jsonl")).lexically_normal().string();
  Recipe r = load_recipe(test_data_dir("recipe/base.toml"),
                         {"model.path=Qwen/Qwen2.5-0.5B@v1",
                          "data.train=[\"" + file + "#3\", \"org/data@main#20\", {\"source\": \"" + file +
                              "\", \"weight\": 0.5}, {\"source\": \"org/other\", \"count\": 7}]",
                          "data.eval=org/evalset"},
                         registry_);
  EXPECT_EQ(r.model.hub_id, "Qwen/Qwen2.5-0.5B@v1");
  ASSERT_EQ(r.data.train.size(), 4u);
  EXPECT_EQ(r.data.train[0].path, fs::path(file));
  EXPECT_EQ(r.data.train[0].count, 3);
  EXPECT_EQ(r.data.train[1].hub_id, "org/data@main");
  EXPECT_EQ(r.data.train[1].count, 20);
  EXPECT_EQ(r.data.train[2].weight, 0.5);
  EXPECT_EQ(r.data.train[3].hub_id, "org/other");
  EXPECT_EQ(r.data.train[3].count, 7);
  ASSERT_EQ(r.data.eval.size(), 1u);
  EXPECT_EQ(r.data.eval[0].hub_id, "org/evalset");
  // The recipe's own train.jsonl (it exists next to base.toml) is a path, not a Hub id.
  Recipe local = load_recipe(test_data_dir("recipe/base.toml"), {}, registry_);
  ASSERT_EQ(local.data.train.size(), 1u);
  EXPECT_TRUE(local.data.train[0].hub_id.empty());
  EXPECT_EQ(local.data.train[0].path, fs::absolute(test_data_dir("recipe/train.jsonl")).lexically_normal());

  auto ds = errors("base.toml", {R"(data.train=[{"source": "org/a", "count": 2, "weight": 1.0}])"});
  EXPECT_TRUE(any(ds, "give a source either count or weight, not both")) << all(ds);
  ds = errors("base.toml", {R"(data.train=[{"source": "org/a", "wieght": 1.0}])"});
  EXPECT_TRUE(any(ds, "unknown key 'wieght' in a source table (known: source, count, weight)")) << all(ds);
  ds = errors("base.toml", {"data.train=[]"});
  EXPECT_TRUE(any(ds, "data.train is an empty list")) << all(ds);
  ds = errors("base.toml", {"data.train=5"});
  EXPECT_TRUE(any(ds, "data.train must be a path or Hub id, or a list of them (got 5)")) << all(ds);
}

TEST_F(RecipeLoader, MissingSectionsAndKeysAndSyntaxErrors) {
  fs::path dir = fs::temp_directory_path() / ("engine_recipe_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "empty_optimizer.toml") << "[optimizer]\nplugin = \"fake_sgd\"\n";
  auto ds = errors((dir / "empty_optimizer.toml").string());
  EXPECT_TRUE(any(ds, "missing section [model]")) << all(ds);
  EXPECT_TRUE(any(ds, "[optimizer] needs lr")) << all(ds);
  std::ofstream(dir / "syntax.toml") << "[train]\nseed = = 3\n";
  ds = errors((dir / "syntax.toml").string());
  ASSERT_EQ(ds.size(), 1u) << all(ds);
  EXPECT_NE(ds[0].location.find("syntax.toml:2:"), std::string::npos) << ds[0].location;
  std::ofstream(dir / "cycle.toml") << "include = \"cycle.toml\"\n";
  ds = errors((dir / "cycle.toml").string());
  EXPECT_TRUE(any(ds, "include cycle")) << all(ds);
  fs::remove_all(dir);
}

TEST_F(RecipeLoader, TheRecipeAsRunReadsBackToTheSameRecipe) {
  Recipe r = load_recipe(test_data_dir("recipe/qlora.toml"), {"train.seed=7"}, registry_);
  fs::path file =
      fs::temp_directory_path() / ("engine_recipe_as_run_" + std::to_string(::getpid()) + ".toml");
  std::ofstream(file) << to_toml(r);
  Recipe back = load_recipe(file, {}, registry_);
  EXPECT_EQ(back.resolved, r.resolved);
  EXPECT_EQ(back.train.seed, 7);
  fs::remove(file);
}

}  // namespace
}  // namespace engine::recipe
