// What goes into <output_dir>/checkpoint-<step>/ and how a run comes back from it:
//   adapter_config.json, adapter_model.safetensors   the adapter in PEFT's format (or, full fine-tuning:
//                                                    model.safetensors fp32 + config.json + tokenizer files)
//   optimizer.safetensors                            the optimizer plugin's state dictionary, or with a
//   optimizer-rank<R>-of-<W>.safetensors             sharded optimizer (zero2) each rank's share of it; a
//                                                    resume on any world size merges every share and each
//                                                    optimizer takes the entries of its own parameters
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

// Saves and returns the published directory. `optimizer_shards`: a folder holding every rank's
// optimizer-rank*.safetensors (write_optimizer_shard), moved into the checkpoint instead of
// optimizer.safetensors (refused unless all `world` shares are there).
std::filesystem::path save_checkpoint(session::TrainingSession& session, const TrainerState& state,
                                      const std::filesystem::path& optimizer_shards = {}, int world = 1);

// This rank's share of a sharded optimizer's state, written atomically as
// <folder>/optimizer-rank<R>-of-<W>.safetensors.
void write_optimizer_shard(session::TrainingSession& session, const std::filesystem::path& folder);

// Verifies the manifest, loads weights and optimizer state into the session and returns the trainer state
// (the caller restores the data cursor and the generator from it). A missing optimizer.safetensors is an
// error unless allow_missing_optimizer_state (--allow-missing-optimizer-state): then the optimizer starts fresh.
TrainerState load_checkpoint(session::TrainingSession& session, const std::filesystem::path& dir,
                             bool allow_missing_optimizer_state = false);

}  // namespace engine::train
