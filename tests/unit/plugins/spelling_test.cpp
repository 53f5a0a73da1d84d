#include "engine/plugins/spelling.hpp"

#include <gtest/gtest.h>

namespace engine::plugins {

TEST(Spelling, EditDistanceCountsInsertionsDeletionsSubstitutionsAndSwaps) {
  EXPECT_EQ(edit_distance("weight_decay", "weight_decay"), 0u);
  EXPECT_EQ(edit_distance("weight_decy", "weight_decay"), 1u);   // deletion
  EXPECT_EQ(edit_distance("wieght_decay", "weight_decay"), 1u);  // transposition
  EXPECT_EQ(edit_distance("lr", "lx"), 1u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
}

TEST(Spelling, SuggestsOnlyCloseCandidatesClosestFirst) {
  std::vector<std::string> keys = {"lr", "weight_decay", "warmup_steps", "betas"};
  EXPECT_EQ(did_you_mean("weight_decy", keys), "; did you mean 'weight_decay'?");
  EXPECT_EQ(did_you_mean("completely_else", keys), "");
  EXPECT_EQ(closest_matches("beta", keys), std::vector<std::string>{"betas"});
}

}  // namespace engine::plugins
