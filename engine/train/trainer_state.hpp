// TrainerState: everything besides weights and optimizer state that a resumed run needs to continue exactly
// where the saved one was: the step, the data sampler's cursor, the run's generator, the non-finite streak,
// the schedule it ran. Saved as <checkpoint>/trainer_state.json (its presence marks a complete checkpoint).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

namespace engine::train {

struct TrainerState {
  int64_t step = 0;         // optimizer steps done (skipped non-finite steps count: the data moved on)
  int64_t total_steps = 0;  // of the whole run
  int64_t tokens_seen = 0;  // label tokens trained on
  nlohmann::json sampler;   // engine::data::ShardedSampler::state_json()
  uint64_t rng_state = 0;   // engine::rt::Rng::state()
  int64_t nonfinite_in_a_row = 0;
  int64_t nonfinite_total = 0;
  double last_loss = 0.0;
  std::string schedule;  // "cosine lr=... warmup=..." (to refuse a resume whose schedule changed)
  std::string weights;   // "adapter" (PEFT files) or "full" (model.safetensors)

  nlohmann::json to_json() const;
  static TrainerState from_json(const nlohmann::json& j);
  void write(const std::filesystem::path& file) const;
  // Throws engine::Error naming the file when it is missing or malformed.
  static TrainerState read(const std::filesystem::path& file);
};

}  // namespace engine::train
