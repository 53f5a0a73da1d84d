// The session hands AdamW weight decay per parameter group: decoupled decay on weights, none on biases and
// norms (ENG_PARAM_NO_DECAY / their roles). With zero gradients AdamW's update is pure decay, w *= 1 - lr*wd,
// so after one step weights shrink by exactly that factor and biases and norm scales do not move.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/session/session.hpp"
#include "engine/train/forward_backward.hpp"
#include "tests/unit/train/train_test_support.hpp"

namespace engine::train {
namespace {

TEST(WeightDecayGroups, NoDecayOnBiasesAndNorms) {
  auto reg = testing::registry();
  recipe::Recipe r = testing::load(*reg, "train/recipes/tiny_fixture.toml", {"optimizer.weight_decay=0.5"});
  session::TrainingSession s(r, *reg, rt::cpu_device());
  // every trainable parameter gets a (zero) gradient buffer
  data::Batch b;
  b.rows = 1;
  b.seq_len = 4;
  b.input_ids = {1, 2, 3, 4};
  b.labels = {2, 3, 4, -100};
  b.position_ids = {0, 1, 2, 3};
  b.segment_ids = {1, 1, 1, 1};
  b.label_tokens = 3;
  forward_backward(s, std::vector<data::Batch>{b});
  s.host().params().zero_grads();
  std::map<std::string, std::vector<float>> before;
  for (rt::Param* p : s.trainable()) before[p->name()] = s.host().params().value(*p).to_float_vector();

  const double lr = 0.1;
  s.optimizer().step(1, lr, 1.0);
  int decayed = 0, kept = 0;
  for (rt::Param* p : s.trainable()) {
    const auto after = s.host().params().value(*p).to_float_vector();
    const auto& was = before[p->name()];
    const bool no_decay = p->decl.role == ENG_ROLE_BIAS || p->decl.role == ENG_ROLE_NORM;
    const float factor = no_decay ? 1.0f : static_cast<float>(1.0 - lr * 0.5);
    for (size_t i = 0; i < was.size(); ++i) {
      ASSERT_FLOAT_EQ(after[i], was[i] * factor) << p->name() << "[" << i << "]";
    }
    (no_decay ? kept : decayed) += 1;
  }
  EXPECT_GT(decayed, 0);
  EXPECT_GT(kept, 0);  // qwen2 has q/k/v biases and norms
}

}  // namespace
}  // namespace engine::train
