// engine/core/splitmix64.hpp against the reference SplitMix64 stream (Vigna's splitmix64.c seeded with 0),
// and the generators built on it.
#include "engine/core/splitmix64.hpp"

#include <gtest/gtest.h>

namespace engine {
namespace {

constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

static_assert(splitmix64(0) == 0xE220A8397B1DCDAFull, "usable in constant expressions");

TEST(Splitmix64, MatchesTheReferenceStream) {
  // splitmix64.c with x = 0 returns these three first; its state advances by kGamma before each mix.
  EXPECT_EQ(splitmix64(0), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(splitmix64(kGamma), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(splitmix64(2 * kGamma), 0x06C45D188009454Full);
}

}  // namespace
}  // namespace engine
