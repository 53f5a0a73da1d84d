// The embedded default of `engine run`: recipes/tiny_lora.toml and the data/tiny/ dataset, compiled into the
// binary (embed_default_recipe.cmake). `engine run` without a recipe uses ./recipes/tiny_lora.toml when the
// current directory is a checkout, and otherwise writes these files under ./engine-tiny-lora/ in the same
// layout (recipes/, data/tiny/) and runs that; the model and checkpoints go to ./engine-tiny-lora/output/.
#pragma once

#include <filesystem>
#include <string_view>

namespace engine::cli {

struct DefaultRecipeFiles {
  std::string_view recipe_toml;  // recipes/tiny_lora.toml
  std::string_view train_jsonl;  // data/tiny/train.jsonl
  std::string_view eval_jsonl;   // data/tiny/eval.jsonl
};

DefaultRecipeFiles default_recipe_files();

// The recipe `engine run` uses when given none (see the file comment); writes the files when needed.
std::filesystem::path default_recipe_path();

}  // namespace engine::cli
