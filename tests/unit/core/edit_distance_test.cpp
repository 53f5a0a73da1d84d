// engine/core/edit_distance.cpp: both ways of counting a swap of neighbours.
#include "engine/core/edit_distance.hpp"

#include <gtest/gtest.h>

namespace engine {
namespace {

TEST(EditDistance, ASwapIsOneEditOrTwo) {
  EXPECT_EQ(edit_distance("wieght", "weight", Transposition::kOneEdit), 1u);
  EXPECT_EQ(edit_distance("wieght", "weight", Transposition::kTwoEdits), 2u);
  EXPECT_EQ(edit_distance("wieght", "weight"), 1u);  // the default is kOneEdit
}

TEST(EditDistance, InsertionsDeletionsSubstitutionsCountTheSameEitherWay) {
  for (Transposition t : {Transposition::kOneEdit, Transposition::kTwoEdits}) {
    EXPECT_EQ(edit_distance("kitten", "sitting", t), 3u);
    EXPECT_EQ(edit_distance("", "abc", t), 3u);
    EXPECT_EQ(edit_distance("abc", "", t), 3u);
    EXPECT_EQ(edit_distance("lm_head.weight", "lm_head.weight", t), 0u);
    EXPECT_EQ(edit_distance("model.norm.weight", "model.norm.bias", t), 5u);
  }
}

}  // namespace
}  // namespace engine
