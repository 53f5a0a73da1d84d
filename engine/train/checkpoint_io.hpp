// What goes into <output_dir>/checkpoint-<step>/ and how a run comes back from it:
//   adapter_config.json, adapter_model.safetensors   the adapter in PEFT's format (or, full fine-tuning:
//                                                    model.safetensors fp32 + config.json + tokenizer files)
//   optimizer.safetensors                            the optimizer plugin's state dictionary
//   recipe.toml, recipe.json                         the recipe file as given and as resolved (--set applied)
//   trainer_state.json                               step, data cursor, generator, counters
//   (trainer_state.hpp)
//   manifest.json                                    SHA-256 of every file above, written last
//   (io/checkpoint_manifest.hpp), verified before anything is loaded on resume
// Written through publish_checkpoint (checkpoint_dir.hpp): temporary directory, fsync, rename, `latest`.
#pragma once

#include <filesystem>

#include "engine/session/session.hpp"
#include "engine/train/trainer_state.hpp"

namespace engine::train {

// Saves and returns the published directory.
std::filesystem::path save_checkpoint(session::TrainingSession& session, const TrainerState& state);

// Verifies the manifest, loads weights and optimizer state into the session and returns the trainer state
// (the caller restores the data cursor and the generator from it). A missing optimizer.safetensors is an
// error unless allow_missing_optimizer_state (--allow-missing-optimizer-state): then the optimizer starts fresh.
TrainerState load_checkpoint(session::TrainingSession& session, const std::filesystem::path& dir,
                             bool allow_missing_optimizer_state = false);

}  // namespace engine::train
