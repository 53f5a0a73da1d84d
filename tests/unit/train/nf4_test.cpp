// plugins/nf4 against bitsandbytes (tests/data/quant/nf4.json, scripts/fixtures/make_bnb_fixtures.py): the code
// book, the packed codes in bitsandbytes' nibble order, the absmax per block of 64, the double-quantized absmax
// (codes, nested absmax, offset) and the dequantized values, bit for bit. Quantize then dequantize stays within
// NF4's bound on random normal weights. Through the engine: which parameters the plugin takes (skip_modules;
// embeddings and norms never) and the bytes per quantized weight measured from the CPU allocator (<= 0.53).
#include "plugins/nf4/nf4_format.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "engine/cli/command.hpp"
#include "engine/session/session.hpp"
#include "tests/unit/train/train_test_support.hpp"

namespace {

nlohmann::json fixture() {
  std::ifstream f(std::string(std::getenv("ENGINE_TEST_DATA")) + "/quant/nf4.json");
  EXPECT_TRUE(f.good());
  return nlohmann::json::parse(f);
}

template <typename T>
std::vector<T> values(const nlohmann::json& j) {
  std::vector<T> v;
  for (const auto& x : j) v.push_back(static_cast<T>(x.get<double>()));
  return v;
}

TEST(Nf4, CodeBookIsBitsandbytes) {
  const auto code = values<float>(fixture()["code"]);
  ASSERT_EQ(code.size(), 16u);
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(nf4::kCode[i], code[i]) << i;
}

TEST(Nf4, QuantizedBlocksAndNibbleOrderAreBitsandbytes) {
  const auto fx = fixture();
  const auto w = values<float>(fx["weight"]);
  const int64_t n = static_cast<int64_t>(w.size()), bs = fx["blocksize"].get<int64_t>();
  std::vector<uint8_t> packed(static_cast<size_t>(n / 2));
  std::vector<float> absmax(static_cast<size_t>(n / bs));
  nf4::quantize(w.data(), n, bs, packed.data(), absmax.data());
  EXPECT_EQ(packed, values<uint8_t>(fx["packed"]));
  EXPECT_EQ(absmax, values<float>(fx["absmax"]));
  // the first element of a pair is the high nibble: (-1, 1) -> codes 0 and 15 -> 0x0F; (1, -1) -> 0xF0
  std::vector<float> pair(64, 0.0f);
  pair[0] = -1.0f, pair[1] = 1.0f, pair[2] = 1.0f, pair[3] = -1.0f;
  std::vector<uint8_t> pp(32);
  float am = 0.0f;
  nf4::quantize(pair.data(), 64, 64, pp.data(), &am);
  EXPECT_EQ(pp[0], 0x0F);
  EXPECT_EQ(pp[1], 0xF0);
  EXPECT_EQ(pp[2], 0x77);  // zeros are code 7
  std::vector<float> deq(w.size());
  nf4::dequantize(packed.data(), absmax.data(), n, bs, deq.data(), nullptr);
  EXPECT_EQ(deq, values<float>(fx["dequantized"]));
}

TEST(Nf4, DoubleQuantizedAbsmaxIsBitsandbytes) {
  const auto fx = fixture();
  const auto& dq = fx["double_quant"];
  const auto absmax = values<float>(fx["absmax"]);
  std::vector<uint8_t> codes(absmax.size());
  std::vector<float> nested(1);
  const float offset = nf4::quantize_absmax(absmax.data(), static_cast<int64_t>(absmax.size()), codes.data(),
                                            nested.data());
  EXPECT_EQ(offset, static_cast<float>(dq["offset"].get<double>()));
  EXPECT_EQ(codes, values<uint8_t>(dq["absmax_codes"]));
  EXPECT_EQ(nested, values<float>(dq["nested_absmax"]));
  std::vector<float> back(absmax.size());
  nf4::dequantize_absmax(codes.data(), nested.data(), offset, static_cast<int64_t>(codes.size()), back.data());
  std::vector<float> deq(fx["weight"].size());
  nf4::dequantize(values<uint8_t>(fx["packed"]).data(), back.data(), static_cast<int64_t>(deq.size()), 64,
                  deq.data(), nullptr);
  EXPECT_EQ(deq, values<float>(dq["dequantized"]));
}

TEST(Nf4, RoundTripWithinTheCodeBookBound) {
  // every value lands on the nearest code of its block: |x - x'| <= absmax * (largest half gap of the code book)
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const int64_t n = 64 * 1000 + 32;  // a partial last block
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = normal(gen);
  std::vector<uint8_t> packed(static_cast<size_t>(n / 2));
  std::vector<float> absmax(static_cast<size_t>((n + 63) / 64));
  nf4::quantize(x.data(), n, 64, packed.data(), absmax.data());
  std::vector<float> y(x.size());
  nf4::dequantize(packed.data(), absmax.data(), n, 64, y.data(), nullptr);
  float half_gap = 0.0f;
  for (int i = 0; i < 15; ++i) half_gap = std::max(half_gap, (nf4::kCode[i + 1] - nf4::kCode[i]) / 2.0f);
  double err2 = 0.0, ref2 = 0.0;
  for (int64_t k = 0; k < n; ++k) {
    const float bound = absmax[static_cast<size_t>(k / 64)] * half_gap * (1.0f + 1e-6f);
    ASSERT_LE(std::fabs(x[static_cast<size_t>(k)] - y[static_cast<size_t>(k)]), bound) << k;
    err2 += double(x[k] - y[k]) * double(x[k] - y[k]);
    ref2 += double(x[k]) * double(x[k]);
  }
  std::cout << "nf4 round trip on N(0, 0.02): relative RMS error " << std::sqrt(err2 / ref2) << "\n";
  EXPECT_LT(std::sqrt(err2 / ref2), 0.12);
  // bf16 output is the fp32 value rounded once
  std::vector<uint16_t> h(x.size());
  nf4::dequantize(packed.data(), absmax.data(), n, 64, nullptr, h.data());
  for (int64_t k = 0; k < n; k += 997) EXPECT_EQ(h[k], nf4::f32_to_bf16_bits(y[k])) << k;
}

namespace fs = std::filesystem;
using namespace engine;

struct Session {
  std::unique_ptr<plugins::PluginRegistry> reg = train::testing::registry();
  recipe::Recipe recipe;
  rt::CpuDevice device{1};
  std::unique_ptr<session::TrainingSession> s;
  explicit Session(const std::vector<std::string>& extra) {
    const fs::path out = fs::temp_directory_path() / "nf4_test";
    std::vector<std::string> sets = {"train.output_dir=" + out.string(), "train.eval_every=0",
                                     "checkpoint.save_every=0"};
    sets.insert(sets.end(), extra.begin(), extra.end());
    recipe = train::testing::load_path(*reg, train::testing::source_file("recipes/tiny_qlora.toml"), sets);
    cli::ensure_preset_model(recipe);
    s = std::make_unique<session::TrainingSession>(recipe, *reg, device);
  }
};

TEST(Nf4, TakesProjectionsButSkipModulesEmbeddingsAndNorms) {
  const fs::path model = fs::temp_directory_path() / "nf4_test_model_tiny";
  Session a({"model.path=" + model.string(), R"(quantizer.skip_modules=["lm_head", "mlp.down_proj"])"});
  int quantized = 0;
  rt::ParamStore& store = a.s->host().params();
  for (size_t i = 0; i < store.size(); ++i) {
    const rt::Param& p = store.at(i);
    const bool down = p.name().find("mlp.down_proj") != std::string::npos;
    if (p.decl.role == ENG_ROLE_LINEAR && !down && p.name().find("lm_head") == std::string::npos &&
        !p.tied()) {
      EXPECT_TRUE(p.quantized()) << p.name();
      ++quantized;
    } else {
      EXPECT_FALSE(p.quantized()) << p.name();
    }
  }
  EXPECT_EQ(quantized, 2 * 6);  // q, k, v, o, gate, up in each of the two blocks
}

// The quantized weights of the small preset (hidden 256) measured from the allocator: the device's live bytes
// before and after the quantizer's states are released, per quantized element.
TEST(Nf4, BytesPerWeightFromTheAllocator) {
  const fs::path model = fs::temp_directory_path() / "nf4_test_model_small";
  Session a({"model.path=" + model.string(), "model.init_preset=small"});
  rt::ParamStore& store = a.s->host().params();
  int64_t elements = 0;
  for (size_t i = 0; i < store.size(); ++i)
    if (store.at(i).quantized()) elements += store.at(i).shape().numel();
  ASSERT_GT(elements, 0);
  const int64_t with = a.device.memory_stats().current_bytes;
  store.release_quantizer(*a.s->host().quantizer());
  const int64_t without = a.device.memory_stats().current_bytes;
  const double per = double(with - without) / double(elements);
  std::cout << "nf4: " << (with - without) << " B for " << elements << " quantized elements = " << per
            << " B per weight\n";
  EXPECT_GT(per, 0.5);
  EXPECT_LE(per, 0.53);
}

}  // namespace

#include "engine/host/host_api.hpp"
#include "engine/host/plugin_quantizer.hpp"
#include "engine/io/safetensors_checkpoint.hpp"
#include "engine/session/model_loader.hpp"

namespace {

using namespace engine;

// A model loaded from tests/data/quant/bnb4bit_tiny (a bitsandbytes-4bit checkpoint) through the nf4 quantizer.
struct Prequantized {
  std::unique_ptr<plugins::PluginRegistry> reg = train::testing::registry();
  rt::CpuDevice device{1};
  host::HostSession hs{device, 0};
  std::unique_ptr<host::PluginQuantizer> quantizer;
  std::unique_ptr<session::ModelInstance> model;
  explicit Prequantized(bool with_quantizer) {
    session::ModelLoadOptions mo;
    mo.options_json = R"({"dtype": "float32"})";
    if (with_quantizer) {
      mo.before_weights = [&](session::ModelInstance&) {
        const plugins::PluginRecord& rec = reg->require(ENG_KIND_QUANTIZER, "nf4");
        quantizer = std::make_unique<host::PluginQuantizer>(hs, host::host_api(), rec.table<eng_quantizer_vtable>(),
                                                            rec.name, "{}");
        for (size_t i = 0; i < hs.params().size(); ++i)
          if (!hs.params().at(i).tied()) hs.params().set_trainable(hs.params().at(i), false);
        hs.params().assign_quantizer(*quantizer);
        hs.set_quantizer(quantizer.get());
      };
    }
    model = session::load_model(hs, *reg, train::testing::test_data("quant/bnb4bit_tiny"), mo);
    hs.params().materialize_all();
  }
  ~Prequantized() {
    model.reset();
    hs.set_quantizer(nullptr);
    quantizer.reset();
  }
};

TEST(Nf4, LoadsABitsandbytes4bitCheckpointToBitsandbytesValues) {
  Prequantized m(true);
  const io::SafetensorsCheckpoint expected =
      io::SafetensorsCheckpoint::open(train::testing::test_data("quant/bnb4bit_tiny_expected.safetensors"));
  ASSERT_EQ(expected.names().size(), 2u);
  for (const std::string& name : expected.names()) {
    rt::Param& p = m.hs.params().get(name);
    ASSERT_TRUE(p.quantized()) << name;
    const rt::Tensor w = m.quantizer->dequantize(p.quant_state, ENG_F32);
    const io::SafetensorsTensor& want = expected.tensor(name);
    ASSERT_EQ(static_cast<size_t>(w.numel()) * 4, want.nbytes) << name;
    EXPECT_EQ(std::memcmp(w.raw_data(), want.data, want.nbytes), 0) << name << " differs from bitsandbytes' dequantize";
  }
  // the other weights loaded dense; every projection came pre-quantized
  int quantized = 0;
  for (size_t i = 0; i < m.hs.params().size(); ++i) quantized += m.hs.params().at(i).quantized() ? 1 : 0;
  EXPECT_EQ(quantized, 14);
}

TEST(Nf4, SavedStateLoadsBackInBitsandbytesNames) {
  Prequantized m(true);
  rt::Param& p = m.hs.params().get("model.layers.1.mlp.down_proj.weight");
  rt::StateDict st;
  m.quantizer->save_state(p.quant_state, st, p.name());
  for (const char* suffix : {"", ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
                             ".quant_state.bitsandbytes__nf4"})
    EXPECT_TRUE(st.contains(p.name() + suffix)) << suffix;
  EXPECT_EQ(st.get(p.name()).dtype(), ENG_U8);
  void* back = m.quantizer->load_state(p, st, p.name());
  const rt::Tensor a = m.quantizer->dequantize(p.quant_state, ENG_F32), b = m.quantizer->dequantize(back, ENG_F32);
  EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), static_cast<size_t>(a.numel()) * 4), 0);
  m.quantizer->free_state(back);
}

TEST(Nf4, APrequantizedCheckpointWithoutAQuantizerSaysWhatToAdd) {
  try {
    Prequantized m(false);
    FAIL() << "a bitsandbytes-4bit checkpoint loaded without a quantizer";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("[quantizer] plugin = \"nf4\""), std::string::npos) << e.what();
  }
}

}  // namespace
