// plugins/adamw's update against torch.optim.AdamW (tests/data/train/adamw.json, written by
// scripts/fixtures/make_peft_fixtures.py): two parameters, one with weight decay 0.1 and one without (a
// bias), five steps with a changing learning rate; every step's values and the final state must agree.
#include "plugins/adamw/adamw_update.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

namespace {

std::vector<float> floats(const nlohmann::json& j) {
  std::vector<float> v;
  for (const auto& x : j) v.push_back(static_cast<float>(x.get<double>()));
  return v;
}

void expect_close(const std::vector<float>& got, const nlohmann::json& want, const char* what, int step) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const double w = want[i].get<double>();
    EXPECT_NEAR(got[i], w, 1e-6 * std::max(1.0, std::abs(w))) << what << " step " << step << " [" << i << "]";
  }
}

}  // namespace

TEST(AdamwUpdate, MatchesTorchAdamW) {
  std::ifstream f(std::string(std::getenv("ENGINE_TEST_DATA")) + "/train/adamw.json");
  ASSERT_TRUE(f.good());
  const auto fx = nlohmann::json::parse(f);
  std::vector<float> w = floats(fx["w0"]), b = floats(fx["b0"]);
  std::vector<float> mw(w.size()), vw(w.size()), mb(b.size()), vb(b.size());
  adamw::Hyper h;
  h.beta1 = fx["betas"][0].get<double>();
  h.beta2 = fx["betas"][1].get<double>();
  h.eps = fx["eps"].get<double>();
  int step = 0;
  for (const auto& s : fx["steps"]) {
    ++step;
    h.lr = s["lr"].get<double>();
    std::vector<float> gw = floats(s["grad_w"]), gb = floats(s["grad_b"]);
    h.weight_decay = fx["weight_decay"].get<double>();
    adamw::update(w.data(), mw.data(), vw.data(), gw.data(), static_cast<int64_t>(w.size()), h, step);
    h.weight_decay = 0.0;  // the bias is a no-decay parameter
    adamw::update(b.data(), mb.data(), vb.data(), gb.data(), static_cast<int64_t>(b.size()), h, step);
    expect_close(w, s["w"], "w", step);
    expect_close(b, s["b"], "b", step);
  }
  const auto& st = fx["final_state"];
  expect_close(mw, st["w_exp_avg"], "w exp_avg", step);
  expect_close(vw, st["w_exp_avg_sq"], "w exp_avg_sq", step);
  expect_close(mb, st["b_exp_avg"], "b exp_avg", step);
  expect_close(vb, st["b_exp_avg_sq"], "b exp_avg_sq", step);
}

TEST(AdamwUpdate, GradScaleEqualsScaledGradient) {
  // grad_scale (the clipping factor) must act exactly like a pre-scaled gradient.
  std::vector<float> p1 = {1.f, -2.f, 3.f}, p2 = p1, m1(3), v1(3), m2(3), v2(3);
  std::vector<float> g = {0.5f, -4.f, 2.f}, g_scaled = {0.25f, -2.f, 1.f};
  adamw::Hyper h;
  h.lr = 0.1;
  h.weight_decay = 0.01;
  h.grad_scale = 0.5;
  adamw::update(p1.data(), m1.data(), v1.data(), g.data(), 3, h, 1);
  h.grad_scale = 1.0;
  adamw::update(p2.data(), m2.data(), v2.data(), g_scaled.data(), 3, h, 1);
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(m1, m2);
  EXPECT_EQ(v1, v2);
  EXPECT_NE(p1[0], 1.f);
}
