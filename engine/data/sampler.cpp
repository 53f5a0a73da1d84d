#include "engine/data/sampler.hpp"

#include <nlohmann/json.hpp>
#include <numeric>

#include "engine/core/error.hpp"
#include "engine/core/splitmix64.hpp"

namespace engine::data {
namespace {

// The SplitMix64 stream (engine/core/splitmix64.hpp): a tiny generator with good statistical quality.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    const uint64_t z = splitmix64(state);
    state += 0x9E3779B97F4A7C15ull;  // the state advances by splitmix64's increment
    return z;
  }
  // Uniform in [0, bound) without modulo bias: reject the lowest 2^64 mod bound values.
  uint64_t below(uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;
    while (true) {
      const uint64_t r = next();
      if (r >= threshold) return r % bound;
    }
  }
};

}  // namespace

ShardedSampler::ShardedSampler(Options options) : options_(options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    fail("sampler: rank {} is not in [0, world size {})", options.rank, options.world_size);
  }
  per_rank_ = options.num_items / static_cast<uint64_t>(options.world_size);
  if (per_rank_ == 0) {
    fail("the dataset has {} rows, fewer than the {} ranks that share it; add data or use fewer processes",
         options.num_items, options.world_size);
  }
}

std::vector<uint64_t> ShardedSampler::epoch_order(uint64_t epoch) const {
  std::vector<uint64_t> order(options_.num_items);
  std::iota(order.begin(), order.end(), 0);
  if (!options_.shuffle) return order;
  SplitMix64 rng{options_.seed ^ (epoch * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull)};
  for (uint64_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  return order;
}

uint64_t ShardedSampler::next() {
  if (state_.position >= per_rank_) {
    ++state_.epoch;
    state_.position = 0;
  }
  if (order_epoch_ != state_.epoch) {
    order_ = epoch_order(state_.epoch);
    order_epoch_ = state_.epoch;
  }
  const uint64_t k = state_.position++;
  return order_[k * static_cast<uint64_t>(options_.world_size) + static_cast<uint64_t>(options_.rank)];
}

std::vector<uint64_t> ShardedSampler::next_batch(size_t count) {
  std::vector<uint64_t> out(count);
  for (auto& v : out) v = next();
  return out;
}

void ShardedSampler::set_state(const SamplerState& state) {
  if (state.position > per_rank_) {
    fail("sampler state position {} is past the end of an epoch ({} rows per rank)", state.position,
         per_rank_);
  }
  state_ = state;
}

nlohmann::json ShardedSampler::state_json() const {
  return {{"epoch", state_.epoch},           {"position", state_.position},       {"seed", options_.seed},
          {"num_items", options_.num_items}, {"world_size", options_.world_size}, {"rank", options_.rank}};
}

void ShardedSampler::restore_json(const nlohmann::json& saved) {
  try {
    const auto seed = saved.at("seed").get<uint64_t>();
    const auto items = saved.at("num_items").get<uint64_t>();
    const auto world = saved.at("world_size").get<int32_t>();
    if (seed != options_.seed || items != options_.num_items || world < 1) {
      fail(
          "cannot resume the data order: the checkpoint's sampler had seed {}, {} rows; this run has seed {}, "
          "{} rows (the same data and seed are needed to resume exactly)",
          seed, items, options_.seed, options_.num_items);
    }
    const auto epoch = saved.at("epoch").get<uint64_t>();
    auto position = saved.at("position").get<uint64_t>();
    if (world != options_.world_size) {
      // Every rank of the saved run was at `position` of its shard: positions 0 .. position*world of the
      // epoch's permutation were consumed. The new ranks continue from there.
      const uint64_t consumed = position * static_cast<uint64_t>(world);
      if (consumed % static_cast<uint64_t>(options_.world_size) != 0)
        fail("cannot resume on {} ranks: the checkpoint (written by {} ranks) has consumed {} rows of epoch {}, "
             "which {} ranks cannot split evenly; resume on a world size that divides {}",
             options_.world_size, world, consumed, epoch, options_.world_size, consumed);
      position = consumed / static_cast<uint64_t>(options_.world_size);
    }
    set_state({epoch, position});
  } catch (const nlohmann::json::exception& e) {
    fail("sampler state in the checkpoint is malformed: {}", e.what());
  }
}

}  // namespace engine::data
