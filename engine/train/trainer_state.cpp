#include "engine/train/trainer_state.hpp"

#include <cmath>
#include <cstdint>
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

namespace {

// Field readers: each names the key and what it holds when the value is not what a checkpoint holds (a hand
// edit, a damaged file whose manifest was rewritten, another program's file), never a raw library exception.
[[noreturn]] void bad_key(const std::string& key, const nlohmann::json& value, const std::string& expected) {
  std::string shown = value.dump(-1, ' ', /*ensure_ascii=*/true, nlohmann::json::error_handler_t::replace);
  if (shown.size() > 80) shown = shown.substr(0, 77) + "...";
  fail_with(ENG_ERR_IO, "key \"{}\" is {}, expected {}", key, shown, expected);
}

const nlohmann::json* find(const nlohmann::json& j, const std::string& key, bool required) {
  const auto it = j.find(key);
  if (it != j.end()) return &*it;
  if (required) fail_with(ENG_ERR_IO, "key \"{}\" is missing", key);
  return nullptr;
}

int64_t read_count(const nlohmann::json& j, const std::string& key, bool required) {
  const nlohmann::json* v = find(j, key, required);
  if (v == nullptr) return 0;
  const bool fits = v->is_number_integer() && (v->is_number_unsigned() ? v->get<uint64_t>() <= INT64_MAX : true);
  if (!fits || v->get<int64_t>() < 0) bad_key(key, *v, "a whole number from 0 to 9223372036854775807");
  return v->get<int64_t>();
}

// rng_state is a decimal string (JSON readers may hold numbers as doubles, and the state uses all 64 bits).
uint64_t read_rng_state(const nlohmann::json& j, const std::string& key) {
  const nlohmann::json& v = *find(j, key, true);
  const char* expected = "a decimal integer from 0 to 18446744073709551615 written as a string";
  if (!v.is_string()) bad_key(key, v, expected);
  const std::string& text = v.get_ref<const std::string&>();
  if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
    bad_key(key, v, expected);
  uint64_t n = 0;
  for (const char c : text) {
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (n > (UINT64_MAX - d) / 10) bad_key(key, v, expected);
    n = n * 10 + d;
  }
  return n;
}

std::string read_text(const nlohmann::json& j, const std::string& key) {
  const nlohmann::json* v = find(j, key, false);
  if (v == nullptr) return {};
  if (!v->is_string()) bad_key(key, *v, "a string");
  return v->get<std::string>();
}

}  // namespace

TrainerState TrainerState::from_json(const nlohmann::json& j) {
  if (!j.is_object()) fail_with(ENG_ERR_IO, "expected a JSON object, got {}", j.type_name());
  TrainerState s;
  s.step = read_count(j, "step", true);
  s.total_steps = read_count(j, "total_steps", true);
  s.tokens_seen = read_count(j, "tokens_seen", false);
  s.sampler = *find(j, "sampler", true);
  if (!s.sampler.is_object()) bad_key("sampler", s.sampler, "an object (the data sampler's position)");
  s.rng_state = read_rng_state(j, "rng_state");
  s.nonfinite_in_a_row = read_count(j, "nonfinite_in_a_row", false);
  s.nonfinite_total = read_count(j, "nonfinite_total", false);
  const nlohmann::json* loss = find(j, "last_loss", false);
  if (loss != nullptr && !loss->is_null() && !loss->is_number()) bad_key("last_loss", *loss, "a number or null");
  s.last_loss = loss != nullptr && loss->is_number() ? loss->get<double>() : 0.0;
  s.schedule = read_text(j, "schedule");
  s.weights = read_text(j, "weights");
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
  const char* fix = "resume from another checkpoint (--resume DIR) or start over (--resume none)";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    fail_with(ENG_ERR_IO, "{} is malformed: {}; {}", file.string(), e.what(), fix);
  }
  try {
    return from_json(j);
  } catch (const Error& e) {
    fail_with(ENG_ERR_IO, "{} is malformed: {}; {}", file.string(), e.what(), fix);
  }
}

}  // namespace engine::train
