// check_weights_cover / check_optimizer_state_covers: a checkpoint must hold exactly the trainable set.
#include "engine/session/trainable_coverage.hpp"

#include <gtest/gtest.h>

#include <functional>

#include "engine/core/error.hpp"

namespace engine::session {
namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const std::vector<std::string> kTrainable = {"base_model.model.layers.0.q.lora_A.weight", "lm_head.weight"};

TEST(TrainableCoverage, WeightsByNameOrPeftPrefix) {
  EXPECT_EQ(message_of([] { check_weights_cover(kTrainable, kTrainable, "w"); }), "");
  EXPECT_EQ(message_of([] {
              check_weights_cover(kTrainable,
                                  {"base_model.model.layers.0.q.lora_A.weight", "base_model.model.lm_head.weight"},
                                  "w");
            }),
            "");
}

TEST(TrainableCoverage, WeightsMissingAndExtraAreNamed) {
  const std::string m = message_of(
      [] { check_weights_cover(kTrainable, {"base_model.model.layers.0.q.lora_A.weight", "stray"}, "DIR"); });
  EXPECT_NE(m.find("DIR does not hold exactly"), std::string::npos) << m;
  EXPECT_NE(m.find("lacks 1 trainable parameter(s) (lm_head.weight)"), std::string::npos) << m;
  EXPECT_NE(m.find("holds 1 tensor(s) that are no trainable parameter of this run (stray)"), std::string::npos) << m;
}

TEST(TrainableCoverage, OptimizerStateByParameterPrefix) {
  const std::vector<std::string> keys = {"base_model.model.layers.0.q.lora_A.weight.exp_avg",
                                         "base_model.model.layers.0.q.lora_A.weight.step", "lm_head.weight.exp_avg"};
  EXPECT_EQ(message_of([&] { check_optimizer_state_covers(kTrainable, keys, "opt"); }), "");
  EXPECT_EQ(message_of([] { check_optimizer_state_covers(kTrainable, {}, "opt"); }), "") << "stateless optimizer";
  const std::string m = message_of([] {
    check_optimizer_state_covers(kTrainable, {"lm_head.weight.exp_avg", "model.norm.weight.exp_avg"}, "OPT");
  });
  EXPECT_NE(m.find("OPT does not cover exactly"), std::string::npos) << m;
  EXPECT_NE(m.find("no state for 1 trainable parameter(s) (base_model.model.layers.0.q.lora_A.weight)"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("(model.norm.weight.exp_avg)"), std::string::npos) << m;
}

}  // namespace
}  // namespace engine::session
