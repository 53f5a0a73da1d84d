// TargetMatcher: the one target matcher behind host target_match (exact, last component, suffix, regex,
// all-linear) and its refusals of malformed lists.
#include "engine/host/target_matcher.hpp"

#include <gtest/gtest.h>

#include "engine/core/error.hpp"

namespace engine::host {
namespace {

const std::string kQ = "model.layers.0.self_attn.q_proj";
const std::string kUp = "model.layers.1.mlp.up_proj";

TEST(TargetMatcher, NamesMatchExactlyOrByDottedSuffix) {
  const TargetMatcher last = TargetMatcher::parse(R"(["q_proj"])");
  EXPECT_TRUE(last.matches(kQ, true));
  EXPECT_FALSE(last.matches(kUp, true));
  EXPECT_FALSE(last.matches("model.layers.0.self_attn.xq_proj", true)) << "a suffix must start at a dot";
  const TargetMatcher suffix = TargetMatcher::parse(R"(["mlp.up_proj"])");
  EXPECT_TRUE(suffix.matches(kUp, true));
  EXPECT_FALSE(suffix.matches("model.layers.1.xmlp.up_proj", true));
  const TargetMatcher exact = TargetMatcher::parse(R"(["lm_head", "model.layers.0.self_attn.q_proj"])");
  EXPECT_TRUE(exact.matches("lm_head", false));
  EXPECT_TRUE(exact.matches(kQ, false));
  EXPECT_FALSE(exact.matches("model.layers.10.self_attn.q_proj", false));
}

TEST(TargetMatcher, RegexMatchesTheWholeName) {
  const TargetMatcher re = TargetMatcher::parse(R"(".*\\.0\\..*(q|v)_proj")");
  EXPECT_TRUE(re.matches(kQ, true));
  EXPECT_FALSE(re.matches(kUp, true));
  EXPECT_FALSE(TargetMatcher::parse(R"("q_proj")").matches(kQ, true)) << "a string is a full-match regex";
}

TEST(TargetMatcher, AllLinearTakesBlockProjectionsOnly) {
  const TargetMatcher all = TargetMatcher::parse(R"("all-linear")");
  EXPECT_TRUE(all.all_linear());
  EXPECT_TRUE(all.matches(kQ, true));
  EXPECT_FALSE(all.matches("lm_head", false));
  EXPECT_TRUE(TargetMatcher::parse(R"(["all-linear"])").all_linear());
}

TEST(TargetMatcher, ModuleOfDropsWeightAndBias) {
  EXPECT_EQ(TargetMatcher::module_of(kQ + ".weight"), kQ);
  EXPECT_EQ(TargetMatcher::module_of(kQ + ".bias"), kQ);
  EXPECT_EQ(TargetMatcher::module_of(kQ), kQ);
}

TEST(TargetMatcher, MalformedListsAreRefusedSayingWhy) {
  auto message = [](const std::string& spec) {
    try {
      TargetMatcher::parse(spec);
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), ENG_ERR_INVALID_ARGUMENT);
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message("[q_proj").find("is not JSON"), std::string::npos);
  EXPECT_NE(message("[]").find("empty list"), std::string::npos);
  EXPECT_NE(message(R"(["all-linear", "q_proj"])").find("mixes"), std::string::npos);
  EXPECT_NE(message(R"("(q")").find("not a valid regular expression"), std::string::npos);
  EXPECT_NE(message("3").find("neither a string nor a list"), std::string::npos);
  EXPECT_NE(message("[3]").find("not a module name"), std::string::npos);
}

}  // namespace
}  // namespace engine::host
