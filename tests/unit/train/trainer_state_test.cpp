#include "engine/train/trainer_state.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/core/error.hpp"

namespace fs = std::filesystem;
using engine::train::TrainerState;

TEST(TrainerState, RoundTripsEveryFieldExactly) {
  TrainerState s;
  s.step = 37;
  s.total_steps = 200;
  s.tokens_seen = 123456;
  s.sampler = {{"epoch", 2}, {"position", 17}, {"seed", 42}};
  s.rng_state = 0xFEDCBA9876543210ull;  // above 2^53: must survive JSON as text
  s.nonfinite_in_a_row = 2;
  s.nonfinite_total = 5;
  s.last_loss = 1.2345678901234567;
  s.schedule = "cosine lr=0.01 warmup=5 min_lr=0.001 total=200";
  s.weights = "adapter";
  const fs::path f = fs::temp_directory_path() / "trainer_state_test.json";
  s.write(f);
  TrainerState r = TrainerState::read(f);
  EXPECT_EQ(r.step, 37);
  EXPECT_EQ(r.total_steps, 200);
  EXPECT_EQ(r.tokens_seen, 123456);
  EXPECT_EQ(r.sampler, s.sampler);
  EXPECT_EQ(r.rng_state, 0xFEDCBA9876543210ull);
  EXPECT_EQ(r.nonfinite_in_a_row, 2);
  EXPECT_EQ(r.nonfinite_total, 5);
  EXPECT_EQ(r.last_loss, s.last_loss);
  EXPECT_EQ(r.schedule, s.schedule);
  EXPECT_EQ(r.weights, "adapter");
  std::ofstream(f) << "{\"step\": 3";
  EXPECT_THROW(TrainerState::read(f), engine::Error);
  fs::remove(f);
  EXPECT_THROW(TrainerState::read(f), engine::Error);
}

// A hand-edited or damaged trainer_state.json (its manifest rewritten to match) is refused with a message naming
// the file and the key, never a raw std::stoull / nlohmann exception.
TEST(TrainerState, MalformedFieldsNameTheFileAndTheKey) {
  const fs::path f = fs::temp_directory_path() / "trainer_state_malformed_test.json";
  TrainerState good;
  good.step = 2;
  good.total_steps = 3;
  good.sampler = {{"epoch", 0}, {"position", 2}};
  good.rng_state = 7;
  struct Case {
    const char* key;
    nlohmann::json value;
    const char* fragment;
  };
  const Case cases[] = {
      {"rng_state", "abc", "key \"rng_state\" is \"abc\", expected a decimal integer"},
      {"rng_state", "", "key \"rng_state\" is \"\""},
      {"rng_state", "-1", "key \"rng_state\" is \"-1\""},
      {"rng_state", "18446744073709551616", "key \"rng_state\" is \"18446744073709551616\""},  // 2^64
      {"rng_state", " 12", "key \"rng_state\" is \" 12\""},
      {"rng_state", 12, "key \"rng_state\" is 12, expected a decimal integer from 0 to 18446744073709551615 written "
                        "as a string"},
      {"step", "3", "key \"step\" is \"3\", expected a whole number"},
      {"step", -1, "key \"step\" is -1"},
      {"step", 1.5, "key \"step\" is 1.5"},
      {"total_steps", 18446744073709551615ull, "key \"total_steps\" is 18446744073709551615"},
      {"tokens_seen", nullptr, "key \"tokens_seen\" is null"},
      {"nonfinite_in_a_row", "x", "key \"nonfinite_in_a_row\" is \"x\""},
      {"last_loss", "x", "key \"last_loss\" is \"x\", expected a number or null"},
      {"sampler", 5, "key \"sampler\" is 5, expected an object"},
      {"schedule", 5, "key \"schedule\" is 5, expected a string"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = good.to_json();
    j[c.key] = c.value;
    std::ofstream(f) << j.dump();
    try {
      (void)TrainerState::read(f);
      ADD_FAILURE() << c.key << " = " << c.value.dump() << " was accepted";
    } catch (const engine::Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(f.string() + " is malformed: "), std::string::npos) << m;
      EXPECT_NE(m.find(c.fragment), std::string::npos) << m;
      EXPECT_NE(m.find("--resume"), std::string::npos) << m;
    }
  }
  for (const char* key : {"step", "total_steps", "rng_state", "sampler"}) {
    nlohmann::json j = good.to_json();
    j.erase(key);
    std::ofstream(f) << j.dump();
    try {
      (void)TrainerState::read(f);
      ADD_FAILURE() << "a state without " << key << " was accepted";
    } catch (const engine::Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("key \"") + key + "\" is missing"), std::string::npos) << e.what();
    }
  }
  std::ofstream(f) << "[1, 2]";
  EXPECT_THROW(TrainerState::read(f), engine::Error);
  nlohmann::json j = good.to_json();  // the largest values still read back
  j["rng_state"] = "18446744073709551615";
  j["step"] = INT64_MAX;
  std::ofstream(f) << j.dump();
  const TrainerState r = TrainerState::read(f);
  EXPECT_EQ(r.rng_state, UINT64_MAX);
  EXPECT_EQ(r.step, INT64_MAX);
  fs::remove(f);
}
