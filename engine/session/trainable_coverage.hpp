// Trainable coverage: what a checkpoint holds must be exactly what the run trains. A PEFT plugin saves the
// parameters it made trainable (its adapters and any base module it chose to train, such as modules_to_save);
// the optimizer saves its state per trainable parameter. A plugin that trains something it does not save, or
// a checkpoint written by another configuration, would otherwise resume from the wrong state without a word.
//
// Naming rules (docs/PLUGINS.md):
//   - a saved weight tensor stands for trainable parameter P when its key is P or "base_model.model." + P
//     (Hugging Face PEFT's prefix, which LoRA's adapter parameters already carry in their names);
//   - an optimizer state key "P.<field>" (P.exp_avg, P.step, ...) belongs to trainable parameter P; an
//     optimizer with no per-parameter state (plain SGD) saves nothing and is not checked.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace engine::session {

// The keys of every .safetensors file in `dir` except optimizer.safetensors (the plugin-written weights).
std::vector<std::string> saved_weight_keys(const std::filesystem::path& dir);

// engine::Error unless `saved_keys` stand for exactly the `trainable` parameters, naming the missing and the
// extra ones. `what`: who wrote them, for the message ("the lora plugin's save into DIR").
void check_weights_cover(const std::vector<std::string>& trainable, const std::vector<std::string>& saved_keys,
                         const std::string& what);

// engine::Error unless the optimizer state `keys` (none at all is accepted) belong to exactly the
// `trainable` parameters, naming the missing parameters and the keys of no trainable parameter.
void check_optimizer_state_covers(const std::vector<std::string>& trainable, const std::vector<std::string>& keys,
                                  const std::string& what);

}  // namespace engine::session
