#include "engine/cli/command.hpp"

#include <iostream>

#include "engine/recipe/recipe_loader.hpp"

namespace engine::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"plugins", "plugins [--json] | plugins describe NAME",
       "list the plugins found (name, kind, version, ABI, file) or describe one's options", &plugins_command},
      {"validate", "validate RECIPE [--set section.key=value]...",
       "check a recipe and print how it wires the plugins (exit 2 with every error)", &validate_command},
      {"run", "run [RECIPE] [--set section.key=value]... [--resume auto|none|DIR] [--offline] [--allow-missing-optimizer-state]",
       "validate a recipe and train (resuming from the newest checkpoint by default; no RECIPE: the embedded "
       "tiny_lora)",
       &run_command},
      {"plan", "plan RECIPE [--set section.key=value]... [--nproc-per-node N] [--device-memory GIB]",
       "print the memory a run will need per component, before loading anything", &plan_command},
      {"export", "export --checkpoint DIR --merged --out DIR [--dtype bf16|fp32] [--verify] [--logits FILE]",
       "write a checkpoint's adapter merged into its base model as a Hugging Face model", &export_command},
      {"plot", "plot OUTPUT_DIR --out FILE.svg", "draw the loss and learning-rate curves of metrics.jsonl",
       &plot_command},
      {"init-model",
       "init-model --arch llama|qwen2 (--preset tiny|small | --config config.json) --out DIR [--seed N] "
       "[--dtype bf16|f32] [--tokenizer DIR|none] [--max-shard-size 5GB] [--threads N]",
       "write a randomly initialised model in Hugging Face layout (config, safetensors shards, tokenizer)",
       &init_model_command},
      {"generate",
       "generate --model DIR [--adapter DIR] --prompt TEXT [--chat] [--max-new-tokens N] [--temperature T] "
       "[--top-p P] [--seed S]",
       "generate text from a Hugging Face model directory with a KV cache, streaming it to stdout",
       &generate_command},
      {"download", "download ID [--revision R] [--include GLOB]... [--repo-type model|dataset]",
       "fetch a Hugging Face Hub repo into the Hugging Face cache (as huggingface_hub lays it out)",
       &download_command},
      {"tokenize", "tokenize --tokenizer PATH [--add-special-tokens] [--jsonl] [--decode]",
       "print the token ids of UTF-8 text on stdin as a JSON array (or, with --decode, the text of ids)",
       &tokenize_command},
  };
  return table;
}

RecipeArgs parse_recipe_args(const std::vector<std::string>& args) {
  RecipeArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--set") {
      if (i + 1 >= args.size()) throw UsageError("--set needs section.key=value");
      out.sets.push_back(args[++i]);
    } else if (a.rfind("--set=", 0) == 0) {
      out.sets.push_back(a.substr(6));
    } else if (!a.empty() && a[0] == '-') {
      out.rest.push_back(a);
    } else if (out.recipe.empty()) {
      out.recipe = a;
    } else {
      throw UsageError("unexpected argument '" + a + "' (one recipe file per command)");
    }
  }
  if (out.recipe.empty()) throw UsageError("missing the recipe file");
  return out;
}

std::optional<recipe::Recipe> load_recipe_or_report(const RecipeArgs& a, const plugins::PluginRegistry& registry,
                                                    bool data_must_exist) {
  try {
    return recipe::load_recipe(a.recipe, a.sets, registry, data_must_exist);
  } catch (const recipe::RecipeError& e) {
    for (const recipe::Diagnostic& d : e.diagnostics()) std::cerr << "error: " << d.str() << "\n";
    std::cerr << e.diagnostics().size() << " error" << (e.diagnostics().size() == 1 ? "" : "s") << " in "
              << a.recipe << "\n";
    return std::nullopt;
  }
}

}  // namespace engine::cli
