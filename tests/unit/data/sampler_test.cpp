// ShardedSampler: fixed order for a seed (independent of the standard library), a permutation per epoch,
// disjoint rank shards, and exact resume from a saved state.
#include "engine/data/sampler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/core/error.hpp"

namespace engine::data {
namespace {

TEST(Sampler, EpochOrderIsASeededPermutationThatChangesPerEpoch) {
  ShardedSampler s({.num_items = 10, .seed = 42});
  const auto e0 = s.epoch_order(0), e1 = s.epoch_order(1);
  auto sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_NE(e0, e1);
  EXPECT_EQ(e0, ShardedSampler({.num_items = 10, .seed = 42}).epoch_order(0));
  EXPECT_NE(e0, ShardedSampler({.num_items = 10, .seed = 43}).epoch_order(0));
  // Pinned: the order is our own splitmix64 + Fisher-Yates (recomputed independently in Python), so it must
  // never change between platforms or library versions.
  EXPECT_EQ(e0, (std::vector<uint64_t>{8, 7, 9, 1, 3, 0, 2, 6, 5, 4}));  // also computed in Python
  EXPECT_EQ(ShardedSampler({.num_items = 4, .seed = 1, .shuffle = false}).epoch_order(3),
            (std::vector<uint64_t>{0, 1, 2, 3}));
}

TEST(Sampler, RanksTakeDisjointShardsOfEqualSize) {
  std::set<uint64_t> all;
  for (int32_t r = 0; r < 3; ++r) {
    ShardedSampler s({.num_items = 11, .seed = 7, .rank = r, .world_size = 3});
    EXPECT_EQ(s.items_per_rank(), 3u);
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(all.insert(s.next()).second);
    EXPECT_EQ(s.state().epoch, 0u);
    (void)s.next();
    EXPECT_EQ(s.state().epoch, 1u);  // rolled over after its 3 items
  }
  EXPECT_EQ(all.size(), 9u);  // 11 - 11 % 3
  EXPECT_THROW(ShardedSampler({.num_items = 2, .world_size = 3}), Error);
  EXPECT_THROW(ShardedSampler({.num_items = 5, .rank = 2, .world_size = 2}), Error);
}

TEST(Sampler, ResumeSeesExactlyTheSameItems) {
  ShardedSampler original({.num_items = 17, .seed = 5, .rank = 1, .world_size = 2});
  (void)original.next_batch(13);  // into the second epoch
  const nlohmann::json saved = nlohmann::json::parse(original.state_json().dump());
  const auto expected = original.next_batch(40);

  ShardedSampler resumed({.num_items = 17, .seed = 5, .rank = 1, .world_size = 2});
  resumed.restore_json(saved);
  EXPECT_EQ(resumed.state().epoch, 1u);
  EXPECT_EQ(resumed.next_batch(40), expected);

  ShardedSampler other_seed({.num_items = 17, .seed = 6, .rank = 1, .world_size = 2});
  EXPECT_THROW(other_seed.restore_json(saved), Error);
  // 2 ranks consumed 2 x 5 rows of epoch 1: 3 ranks cannot split 10 rows evenly.
  ShardedSampler three({.num_items = 17, .seed = 5, .rank = 0, .world_size = 3});
  EXPECT_THROW(three.restore_json(saved), Error);
  EXPECT_THROW(resumed.set_state({0, 100}), Error);
}

TEST(Sampler, ResumeOnAnotherWorldSizeContinuesAfterTheRowsTheOldRanksConsumed) {
  // 2 ranks take 3 rows each of epoch 0 (positions 0..5 of the permutation), then stop; 1 rank and 3 ranks
  // resume and together see exactly positions 6.. of the same permutation.
  const uint64_t n = 24;
  nlohmann::json saved;
  for (int32_t r = 0; r < 2; ++r) {
    ShardedSampler s({.num_items = n, .seed = 9, .rank = r, .world_size = 2});
    (void)s.next_batch(3);
    saved = nlohmann::json::parse(s.state_json().dump());
  }
  const std::vector<uint64_t> order = ShardedSampler({.num_items = n, .seed = 9}).epoch_order(0);
  const std::vector<uint64_t> rest(order.begin() + 6, order.end());
  ShardedSampler one({.num_items = n, .seed = 9});
  one.restore_json(saved);
  EXPECT_EQ(one.next_batch(rest.size()), rest);
  std::vector<uint64_t> seen(rest.size());
  for (int32_t r = 0; r < 3; ++r) {
    ShardedSampler s({.num_items = n, .seed = 9, .rank = r, .world_size = 3});
    s.restore_json(saved);
    for (size_t k = 0; k < rest.size() / 3; ++k) seen[k * 3 + static_cast<size_t>(r)] = s.next();
  }
  EXPECT_EQ(seen, rest);
}

}  // namespace
}  // namespace engine::data
