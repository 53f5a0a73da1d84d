// engine export --merged --verify on a trained tiny adapter: writes a Hugging Face model whose logits equal
// base + adapter (checked by the command itself, and here by reading its report), and refuses a non-empty
// --out.
#include "tests/e2e/e2e_support.hpp"

namespace engine::e2e {
namespace {

TEST(Export, MergedModelMatchesBasePlusAdapter) {
  const fs::path dir = fresh_dir("export");
  ASSERT_EQ(run_engine({"run", (source_dir() / "recipes/tiny_lora.toml").string(), "--set",
                        "model.path=" + (dir / "model").string(), "--set",
                        "train.output_dir=" + (dir / "out").string(), "--set", "train.max_steps=30", "--set",
                        "train.eval_every=0"},
                       dir / "run.log"),
            0)
      << read_file(dir / "run.log");
  const fs::path merged = dir / "merged";
  const int rc = run_engine({"export", "--checkpoint", (dir / "out/checkpoint-30").string(), "--merged",
                             "--out", merged.string(), "--verify"},
                            dir / "export.log");
  const std::string log = read_file(dir / "export.log");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("into 14 weights"), std::string::npos) << log;
  EXPECT_NE(log.find("): ok"), std::string::npos) << log;
  for (const char* f : {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_TRUE(fs::exists(merged / f)) << f;
  }
  // the merged weights differ from the base ones (the adapter was trained)
  EXPECT_FALSE(same_bytes(merged / "model.safetensors", dir / "model/model.safetensors"));
  EXPECT_NE(run_engine({"export", "--checkpoint", (dir / "out/checkpoint-30").string(), "--merged", "--out",
                        merged.string()},
                       dir / "again.log"),
            0);
}

}  // namespace
}  // namespace engine::e2e
