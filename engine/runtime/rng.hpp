// Rng: the run's seeded random generator (splitmix64). Its whole state is one 64-bit word, so checkpoints
// save and restore it exactly (state()/set_state()). Streams for independent consumers (a parameter's init, a
// dropout mask) are derived with derive(), which mixes a key into a seed.
#pragma once

#include <cstdint>
#include <string_view>

#include "engine/core/splitmix64.hpp"

namespace engine::rt {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : state_(seed) {}

  uint64_t next_u64() {
    const uint64_t z = splitmix64(state_);  // engine/core/splitmix64.hpp: mixes state_ + kIncrement
    state_ += kIncrement;
    return z;
  }
  // Uniform in [0, 1) with 53 random bits.
  double next_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Skips n draws in O(1): splitmix64's state is a counter (init-model generates ranges of a tensor apart).
  void skip(uint64_t n) { state_ += n * kIncrement; }

  uint64_t state() const { return state_; }
  void set_state(uint64_t state) { state_ = state; }

  // A seed for an independent stream keyed by `key` (FNV-1a of the key mixed into `seed`).
  static uint64_t derive(uint64_t seed, std::string_view key) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (char c : key) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
    Rng mix(seed ^ h);
    return mix.next_u64();
  }

 private:
  static constexpr uint64_t kIncrement = 0x9E3779B97F4A7C15ull;
  uint64_t state_;
};

}  // namespace engine::rt
