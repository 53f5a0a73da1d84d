// RMSNorm and RoPE: forward against plain loops (and RoPE against transformers' values from a committed
// fixture), backward against finite differences in fp64, f32 against f64.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/runtime/ops/ops.hpp"
#include "kernels/cpu/rope.hpp"
#include "op_test_support.hpp"

namespace engine::rt {
namespace {

using namespace testing;

TEST(RmsNorm, ForwardGradientAndF32) {
  const int64_t N = 6, C = 13;
  const double eps = 1e-5;
  Tensor x = random_tensor({2, 3, C}, ENG_F64, 1, 2.0), w = random_tensor({C}, ENG_F64, 2);
  const auto xv = values(x), wv = values(w);
  const auto y = values(ops::make_rms_norm(eps)->forward({x, w}, false)[0]);
  for (int64_t n = 0; n < N; ++n) {
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += xv[n * C + c] * xv[n * C + c];
    const double r = 1.0 / std::sqrt(ss / C + eps);
    for (int64_t c = 0; c < C; ++c) EXPECT_NEAR(y[n * C + c], xv[n * C + c] * r * wv[c], 1e-14);
  }
  expect_gradients_match([eps] { return ops::make_rms_norm(eps); }, {x, w}, {true, true});
  // More rows than one reduction block (32) so the weight gradient combines several partials.
  expect_gradients_match([eps] { return ops::make_rms_norm(eps); },
                         {random_tensor({70, 5}, ENG_F64, 3), random_tensor({5}, ENG_F64, 4)}, {true, true});
  const auto yf = values(ops::make_rms_norm(eps)->forward({x.to(ENG_F32), w.to(ENG_F32)}, false)[0]);
  expect_close(yf, y, 1e-5, 1e-6, "rms_norm f32 vs f64");
}

eng_rope_config rope_config(double theta, int32_t rotary_dim, eng_rope_scaling scaling = ENG_ROPE_NONE,
                            double factor = 1.0) {
  eng_rope_config c{};
  c.struct_size = sizeof(c);
  c.theta = theta;
  c.rotary_dim = rotary_dim;
  c.scaling = scaling;
  c.factor = factor;
  c.low_freq_factor = 1.0;
  c.high_freq_factor = 4.0;
  c.original_max_position = 8192;
  return c;
}

// Plain rotate_half reference in double with the angle from inv_freq.
std::vector<double> rope_ref(const Tensor& x, const std::vector<int32_t>& pos,
                             const std::vector<float>& inv_freq, int64_t rot) {
  const auto xv = values(x);
  const int64_t B = x.dim(0), T = x.dim(1), H = x.dim(2), D = x.dim(3), half = rot / 2;
  std::vector<double> y = xv;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const double a = double(float(pos[b * T + t])) * double(inv_freq[i]);
          const int64_t o = ((b * T + t) * H + h) * D;
          y[o + i] = xv[o + i] * std::cos(a) - xv[o + i + half] * std::sin(a);
          y[o + i + half] = xv[o + i + half] * std::cos(a) + xv[o + i] * std::sin(a);
        }
  return y;
}

TEST(Rope, ForwardMatchesRotateHalfIncludingPartialRotary) {
  const int64_t B = 2, T = 5, H = 3, D = 10;
  Tensor x = random_tensor({B, T, H, D}, ENG_F64, 5);
  std::vector<int32_t> pos = {0, 1, 2, 3, 4, 0, 1, 2, 0, 1};  // the second row packs two documents
  Tensor p = Tensor::from_vector({B, T}, ENG_I32, cpu_device(), pos);
  for (int32_t rot : {10, 6}) {
    const eng_rope_config cfg = rope_config(10000.0, rot);
    cpu::RopeParams rp;
    rp.theta = 10000.0;
    rp.rotary_dim = rot;
    const auto inv = cpu::rope_inv_freq(rp);
    for (int64_t i = 0; i < rot / 2; ++i)
      EXPECT_NEAR(inv[i], std::pow(10000.0, -2.0 * i / rot), 1e-6 * inv[i]);
    const auto y = values(ops::make_rope(cfg)->forward({x, p}, false)[0]);
    expect_close(y, rope_ref(x, pos, inv, rot), 1e-14, 1e-14, "rope");
    expect_gradients_match([cfg] { return ops::make_rope(cfg); }, {x, p}, {true, false});
    const auto yf = values(ops::make_rope(cfg)->forward({x.to(ENG_F32), p}, false)[0]);
    expect_close(yf, y, 1e-5, 1e-6, "rope f32 vs f64");
  }
}

TEST(Rope, ScaledConfigsGradientsAndInverse) {
  Tensor x = random_tensor({1, 4, 2, 8}, ENG_F64, 6);
  Tensor p = Tensor::from_vector({1, 4}, ENG_I32, cpu_device(), std::vector<int32_t>{3, 900, 4100, 20000});
  eng_rope_config llama3 = rope_config(500000.0, 8, ENG_ROPE_LLAMA3, 8.0);
  // wavelengths 6.3, 167, 4443, 118000 against the bands 50 / 200: kept, smoothed, divided, divided
  llama3.original_max_position = 200;
  for (const eng_rope_config& cfg : {llama3, rope_config(10000.0, 8, ENG_ROPE_LINEAR, 4.0)}) {
    expect_gradients_match([cfg] { return ops::make_rope(cfg); }, {x, p}, {true, false});
    // The rotation preserves each (i, i + h) pair's norm, and a rotation by -angle (backward) undoes it.
    auto node = ops::make_rope(cfg);
    Tensor y = node->forward({x, p}, true)[0];
    const auto back = values(node->backward({y}, {true, false})[0]);
    expect_close(back, values(x), 1e-12, 1e-12, "rope backward of forward");
  }
}

TEST(Rope, RejectsBadConfig) {
  EXPECT_THROW(ops::make_rope(rope_config(10000.0, 7)), Error);
  EXPECT_THROW(ops::make_rope(rope_config(-1.0, 8)), Error);
}

// transformers' inv_freq bit for bit and its rotated q (float32) for default, llama3 and linear scaling.
TEST(Rope, MatchesTransformersFixture) {
  const char* data = std::getenv("ENGINE_TEST_DATA");
  if (!data) GTEST_SKIP() << "ENGINE_TEST_DATA is not set";
  std::ifstream f(std::string(data) + "/runtime_ops/rope_reference.json");
  if (!f) GTEST_SKIP() << "rope_reference.json is absent (run scripts/fixtures/rope_reference.py)";
  const nlohmann::json j = nlohmann::json::parse(f);
  const int64_t D = j["head_dim"], H = j["heads"];
  const std::vector<int32_t> pos = j["positions"].get<std::vector<int32_t>>();
  const int64_t T = static_cast<int64_t>(pos.size());
  const std::vector<float> q = j["q"].get<std::vector<float>>();
  Tensor qt = Tensor::from_vector({1, T, H, D}, ENG_F32, cpu_device(), q);
  Tensor pt = Tensor::from_vector({1, T}, ENG_I32, cpu_device(), pos);
  for (const auto& [name, c] : j["configs"].items()) {
    SCOPED_TRACE(name);
    eng_rope_config cfg = rope_config(c["rope_theta"], static_cast<int32_t>(D));
    if (name == "llama3") {
      cfg.scaling = ENG_ROPE_LLAMA3;
      cfg.factor = c["factor"];
      cfg.low_freq_factor = c["low_freq_factor"];
      cfg.high_freq_factor = c["high_freq_factor"];
      cfg.original_max_position = c["original_max_position_embeddings"];
    } else if (name == "linear") {
      cfg.scaling = ENG_ROPE_LINEAR;
      cfg.factor = c["factor"];
    }
    cpu::RopeParams rp;
    rp.theta = cfg.theta;
    rp.rotary_dim = cfg.rotary_dim;
    rp.scaling = static_cast<int>(cfg.scaling);
    rp.factor = cfg.factor;
    rp.low_freq_factor = cfg.low_freq_factor;
    rp.high_freq_factor = cfg.high_freq_factor;
    rp.original_max_position = cfg.original_max_position;
    const auto inv = cpu::rope_inv_freq(rp);
    const auto bits = c["inv_freq_bits"].get<std::vector<uint32_t>>();
    ASSERT_EQ(inv.size(), bits.size());
    for (size_t i = 0; i < inv.size(); ++i) {
      uint32_t mine;
      std::memcpy(&mine, &inv[i], 4);
      EXPECT_EQ(mine, bits[i]) << "inv_freq[" << i << "] " << inv[i];
    }
    const auto y = values(ops::make_rope(cfg)->forward({qt, pt}, false)[0]);
    const auto ref = c["q_rotated"].get<std::vector<double>>();
    // cos/sin of float32 angles up to 70000 rad: float libm and torch may differ in the last ulp of the
    // angle's reduction, so compare at float precision scaled by the angle size.
    expect_close(y, ref, 0, 2e-5, "rope vs transformers");
  }
}

}  // namespace
}  // namespace engine::rt
