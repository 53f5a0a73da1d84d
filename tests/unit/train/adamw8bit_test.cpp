// plugins/adamw8bit against bitsandbytes (tests/data/quant/adamw8bit.json, scripts/fixtures/make_bnb_fixtures.py):
// the dynamic maps of create_dynamic_map(signed=True/False) and three 8-bit blockwise AdamW steps of a
// 600-element parameter (a partial last block, a block with a zero gradient) must agree bit for bit: codes,
// absmax values and parameters. Then the plugin through the engine: the optimizer state of a tiny full
// fine-tuning run measured from the CPU allocator is at most 2.1 bytes per trainable element.
#include "plugins/adamw8bit/blockwise8.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "engine/cli/command.hpp"
#include "engine/session/session.hpp"
#include "engine/train/data_pipeline.hpp"
#include "engine/train/trainer.hpp"
#include "tests/unit/train/train_test_support.hpp"

namespace {

nlohmann::json fixture() {
  std::ifstream f(std::string(std::getenv("ENGINE_TEST_DATA")) + "/quant/adamw8bit.json");
  EXPECT_TRUE(f.good());
  return nlohmann::json::parse(f);
}

template <typename T>
std::vector<T> values(const nlohmann::json& j) {
  std::vector<T> v;
  for (const auto& x : j) v.push_back(static_cast<T>(x.get<double>()));
  return v;
}

uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

TEST(Adamw8bit, DynamicMapsAreBitsandbytes) {
  const auto fx = fixture();
  const auto s = values<float>(fx["map_signed"]), u = values<float>(fx["map_unsigned"]);
  ASSERT_EQ(s.size(), 256u);
  ASSERT_EQ(u.size(), 256u);
  for (size_t i = 0; i < 256; ++i) {
    EXPECT_EQ(bits(adamw8bit::signed_map()[i]), bits(s[i])) << "signed[" << i << "] " << s[i];
    EXPECT_EQ(bits(adamw8bit::unsigned_map()[i]), bits(u[i])) << "unsigned[" << i << "] " << u[i];
  }
  EXPECT_GT(adamw8bit::signed_map().front(), -1.0f);  // bnb's signed map: -0.99297 ... 0 ... 1
  EXPECT_EQ(adamw8bit::signed_map().back(), 1.0f);
  EXPECT_EQ(adamw8bit::unsigned_map().front(), 0.0f);
}

TEST(Adamw8bit, NearestCodeIsArgmin) {
  const float* code = adamw8bit::signed_map().data();
  for (float x : {-1.0f, -0.73f, -1e-7f, 0.0f, 3e-6f, 0.0125f, 0.5f, 0.9999f, 1.0f}) {
    int best = 0;
    for (int i = 1; i < 256; ++i)
      if (std::fabs(x - code[i]) < std::fabs(x - code[best])) best = i;
    EXPECT_EQ(adamw8bit::nearest_code(code, x), best) << x;
  }
  // a value exactly between two codes goes to the lower one (torch.argmin returns the first minimum):
  // on the map k / 256, (2k + 1) / 512 lies exactly halfway between codes k and k + 1
  float even[256];
  for (int k = 0; k < 256; ++k) even[k] = static_cast<float>(k) / 256.0f;
  for (int k : {0, 7, 100, 254}) EXPECT_EQ(adamw8bit::nearest_code(even, (2.0f * k + 1.0f) / 512.0f), k);
}

TEST(Adamw8bit, StepsMatchBitsandbytes) {
  const auto fx = fixture();
  std::vector<float> p = values<float>(fx["p0"]);
  const int64_t n = static_cast<int64_t>(p.size());
  std::vector<uint8_t> c1(p.size(), 0), c2(p.size(), 0);
  std::vector<float> a1(static_cast<size_t>(adamw8bit::blocks_of(n)), 0.0f), a2(a1.size(), 0.0f);
  adamw8bit::Hyper h;
  h.lr = fx["lr"].get<double>();
  h.beta1 = fx["betas"][0].get<double>();
  h.beta2 = fx["betas"][1].get<double>();
  h.eps = fx["eps"].get<double>();
  h.weight_decay = fx["weight_decay"].get<double>();
  int t = 0;
  for (const auto& st : fx["steps"]) {
    ++t;
    const std::vector<float> g = values<float>(st["grad"]);
    adamw8bit::update_8bit(p.data(), g.data(), c1.data(), c2.data(), a1.data(), a2.data(), n,
                           adamw8bit::coefficients(h, t));
    const auto want_p = values<float>(st["p"]), want_a1 = values<float>(st["absmax1"]),
               want_a2 = values<float>(st["absmax2"]);
    const auto want_c1 = values<int>(st["state1"]), want_c2 = values<int>(st["state2"]);
    for (size_t b = 0; b < a1.size(); ++b) {
      EXPECT_EQ(bits(a1[b]), bits(want_a1[b])) << "absmax1 block " << b << " step " << t;
      EXPECT_EQ(bits(a2[b]), bits(want_a2[b])) << "absmax2 block " << b << " step " << t;
    }
    if (t == 1) {
      EXPECT_EQ(a1[1], 1.0f) << "a block without gradient has absmax 1 (bitsandbytes' 0 -> 1)";
    }
    int bad = 0;
    for (size_t i = 0; i < p.size() && bad < 5; ++i) {
      if (bits(p[i]) != bits(want_p[i]) || c1[i] != want_c1[i] || c2[i] != want_c2[i]) {
        ++bad;
        ADD_FAILURE() << "step " << t << " element " << i << ": p " << p[i] << " vs " << want_p[i] << ", state1 "
                      << int(c1[i]) << " vs " << want_c1[i] << ", state2 " << int(c2[i]) << " vs " << want_c2[i];
      }
    }
  }
}

TEST(Adamw8bit, SmallTensorsKeepFp32StatesWithTheSameMath) {
  // update_32bit is update_8bit without the re-quantization: with states that the 8-bit map holds exactly
  // (zero) the first step gives the same parameter.
  std::vector<float> p8 = {0.5f, -0.25f, 2.0f}, p32 = p8, g = {0.1f, -3.0f, 1e-4f};
  std::vector<uint8_t> c1(3), c2(3);
  for (size_t i = 0; i < 3; ++i) {
    c1[i] = adamw8bit::nearest_code(adamw8bit::signed_map().data(), 0.0f);
    c2[i] = 0;
  }
  std::vector<float> a1 = {1.0f}, a2 = {1.0f}, m(3, 0.0f), v(3, 0.0f);
  const auto c = adamw8bit::coefficients(adamw8bit::Hyper{}, 1);
  adamw8bit::update_8bit(p8.data(), g.data(), c1.data(), c2.data(), a1.data(), a2.data(), 3, c);
  adamw8bit::update_32bit(p32.data(), g.data(), m.data(), v.data(), 3, c);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(p8[i], p32[i]) << i;
  EXPECT_NE(m[0], 0.0f);
}

// The optimizer state of a tiny full fine-tuning run (every parameter 8-bit: min_8bit_size 0), measured from
// the allocator: the device's live bytes after training minus those after the state is dropped (load_state
// of an empty checkpoint), per trainable element.
TEST(Adamw8bit, StateBytesPerElementFromTheAllocator) {
  namespace fs = std::filesystem;
  using namespace engine;
  auto reg = train::testing::registry();
  const fs::path out = fs::temp_directory_path() / "adamw8bit_state_bytes_test";
  fs::remove_all(out);
  recipe::Recipe r = train::testing::load_path(
      *reg, train::testing::source_file("recipes/tiny_full.toml"),
      {"train.output_dir=" + out.string(), "model.path=" + (out / "model").string(), "train.max_steps=2",
       "checkpoint.save_every=0", "train.eval_every=0", "optimizer.plugin=adamw8bit",
       "optimizer.min_8bit_size=0"});
  cli::ensure_preset_model(r);
  rt::CpuDevice device(1);
  session::TrainingSession s(r, *reg, device);
  int64_t elements = 0;
  for (const rt::Param* p : s.trainable()) elements += p->shape().numel();
  train::DataPipeline data(r);
  train::TrainOptions o;
  o.resume = "none";
  o.progress_out = std::fopen("/dev/null", "w");
  train::TrainResult res = train::train(s, data, o);
  std::fclose(o.progress_out);
  ASSERT_EQ(res.last_step, 2);
  const int64_t with_state = device.memory_stats().current_bytes;
  rt::StateDict empty;
  s.optimizer().load_state(empty);
  const int64_t without_state = device.memory_stats().current_bytes;
  const double per_element = double(with_state - without_state) / double(elements);
  std::cout << "adamw8bit state: " << (with_state - without_state) << " B for " << elements
            << " trainable elements = " << per_element << " B per element (plan: "
            << s.optimizer().state_bytes_per_element() << ")\n";
  EXPECT_GT(per_element, 2.0);
  EXPECT_LE(per_element, 2.1);
  fs::remove_all(out);
}

}  // namespace
