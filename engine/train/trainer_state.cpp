#include "engine/train/trainer_state.hpp"

#include <cmath>
#include <fstream>

#include "engine/core/error.hpp"

namespace engine::train {

nlohmann::json TrainerState::to_json() const {
  return {{"step", step},
          {"total_steps", total_steps},
          {"tokens_seen", tokens_seen},
          {"sampler", sampler},
          {"rng_state", std::to_string(rng_state)},  // as text: JSON readers may hold numbers as doubles
          {"nonfinite_in_a_row", nonfinite_in_a_row},
          {"nonfinite_total", nonfinite_total},
          {"last_loss", std::isfinite(last_loss) ? nlohmann::json(last_loss) : nlohmann::json(nullptr)},
          {"schedule", schedule},
          {"weights", weights}};
}

TrainerState TrainerState::from_json(const nlohmann::json& j) {
  TrainerState s;
  s.step = j.at("step").get<int64_t>();
  s.total_steps = j.at("total_steps").get<int64_t>();
  s.tokens_seen = j.value("tokens_seen", int64_t{0});
  s.sampler = j.at("sampler");
  s.rng_state = std::stoull(j.at("rng_state").get<std::string>());
  s.nonfinite_in_a_row = j.value("nonfinite_in_a_row", int64_t{0});
  s.nonfinite_total = j.value("nonfinite_total", int64_t{0});
  s.last_loss = j.contains("last_loss") && j["last_loss"].is_number() ? j["last_loss"].get<double>() : 0.0;
  s.schedule = j.value("schedule", std::string());
  s.weights = j.value("weights", std::string());
  return s;
}

void TrainerState::write(const std::filesystem::path& file) const {
  std::ofstream f(file, std::ios::trunc);
  if (!f) fail_with(ENG_ERR_IO, "cannot write {}", file.string());
  f << to_json().dump(2) << '\n';
  if (!f.flush()) fail_with(ENG_ERR_IO, "cannot write {} (disk full?)", file.string());
}

TrainerState TrainerState::read(const std::filesystem::path& file) {
  std::ifstream f(file);
  if (!f)
    fail_with(ENG_ERR_IO, "cannot read {}: the checkpoint is incomplete or not a checkpoint", file.string());
  try {
    return from_json(nlohmann::json::parse(f));
  } catch (const nlohmann::json::exception& e) {
    fail_with(ENG_ERR_IO, "{} is malformed: {}", file.string(), e.what());
  }
}

}  // namespace engine::train
