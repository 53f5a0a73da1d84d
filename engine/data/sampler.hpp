// ShardedSampler: the order in which a rank visits the rows of a dataset. Deterministic (its own splitmix64
// generator and Fisher-Yates shuffle, so the order is the same with every standard library), reshuffled
// each epoch from (seed, epoch), and sharded: rank r of W takes items k*W + r of the epoch's permutation;
// the last num_items % W items of a permutation are left out of that epoch so every rank sees as many.
// State {epoch, position} is saved in checkpoints: a sampler set to a saved state yields exactly what the
// original would have yielded next.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <vector>

namespace engine::data {

struct SamplerState {
  uint64_t epoch = 0;
  uint64_t position = 0;  // items of this rank already taken in `epoch`
};

class ShardedSampler {
 public:
  struct Options {
    uint64_t num_items = 0;
    uint64_t seed = 0;
    int32_t rank = 0;
    int32_t world_size = 1;
    bool shuffle = true;
  };

  explicit ShardedSampler(Options options);

  // Items this rank takes per epoch.
  uint64_t items_per_rank() const noexcept { return per_rank_; }
  // The next item index; moves to the next epoch (reshuffled) when this one is exhausted.
  uint64_t next();
  // The next `count` items (a micro-batch's rows).
  std::vector<uint64_t> next_batch(size_t count);

  const SamplerState& state() const noexcept { return state_; }
  // Resumes; throws engine::Error when the position is past the epoch's end.
  void set_state(const SamplerState& state);

  // {"epoch", "position", "seed", "num_items", "world_size", "rank"}
  nlohmann::json state_json() const;
  // Resumes from state_json's output; refuses (engine::Error) a state saved with another seed or dataset
  // size, since the order would then differ. A state saved with another world size W continues after the
  // position * W rows of the epoch's permutation that the W ranks consumed (refused when this world size
  // does not divide that count); the rest of that epoch is then exactly the rows not yet seen, except that
  // the num_items % world rows an epoch leaves out depend on the world size.
  void restore_json(const nlohmann::json& saved);

  // The whole permutation of epoch `epoch` (identity without shuffle).
  std::vector<uint64_t> epoch_order(uint64_t epoch) const;

 private:
  Options options_;
  uint64_t per_rank_ = 0;
  SamplerState state_;
  uint64_t order_epoch_ = ~0ull;
  std::vector<uint64_t> order_;  // epoch_order(order_epoch_)
};

}  // namespace engine::data
