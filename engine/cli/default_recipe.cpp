#include "engine/cli/default_recipe.hpp"

#include <spdlog/spdlog.h>

#include "engine/io/atomic_file.hpp"

namespace engine::cli {

namespace fs = std::filesystem;

fs::path default_recipe_path() {
  if (fs::exists("recipes/tiny_lora.toml") && fs::exists("data/tiny/train.jsonl")) {
    return fs::absolute("recipes/tiny_lora.toml");
  }
  const fs::path root = fs::absolute("engine-tiny-lora");
  const DefaultRecipeFiles f = default_recipe_files();
  fs::create_directories(root / "recipes");
  fs::create_directories(root / "data" / "tiny");
  if (!fs::exists(root / "data/tiny/train.jsonl")) {
    io::write_file_atomic(root / "data/tiny/train.jsonl", f.train_jsonl);
    io::write_file_atomic(root / "data/tiny/eval.jsonl", f.eval_jsonl);
  }
  if (!fs::exists(root / "recipes/tiny_lora.toml")) io::write_file_atomic(root / "recipes/tiny_lora.toml", f.recipe_toml);
  spdlog::info("wrote the default recipe and its dataset to {}", root.string());
  return root / "recipes/tiny_lora.toml";
}

}  // namespace engine::cli
