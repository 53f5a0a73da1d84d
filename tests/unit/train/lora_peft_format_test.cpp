// plugins/lora against Hugging Face PEFT (fixtures written by scripts/fixtures/make_peft_fixtures.py with
// peft's own get_peft_model + save_pretrained on a tiny random Qwen2):
//  - what the plugin saves has PEFT's keys and shapes (keys.json) and PEFT's config fields
//  (adapter_config.json)
//  - it initialises like PEFT (A Kaiming-uniform with a = sqrt(5): |A| <= 1/sqrt(in); B = 0)
//  - an adapter PEFT wrote loads into the engine and gives the PeftModel's logits, and merged weights give
//    PEFT's merge_and_unload logits
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/io/safetensors.hpp"
#include "engine/session/session.hpp"
#include "tests/unit/train/train_test_support.hpp"

namespace engine::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json(const fs::path& p) {
  std::ifstream f(p);
  EXPECT_TRUE(f.good()) << p;
  return json::parse(f);
}

fs::path fresh(const char* name) {
  fs::path d = fs::temp_directory_path() / name;
  fs::remove_all(d);
  return d;
}

// Saves the adapter of a recipe and compares it with a PEFT-written reference directory.
void expect_peft_format(const std::vector<std::string>& sets, const char* reference) {
  auto reg = testing::registry();
  recipe::Recipe r = testing::load(*reg, "train/recipes/tiny_fixture.toml", sets);
  session::TrainingSession s(r, *reg, rt::cpu_device());
  const fs::path out = fresh(reference);
  s.save_weights(out);
  const fs::path ref = testing::test_data(std::string("train/peft_qwen2_tiny/") + reference);

  // keys and shapes
  json want_keys = read_json(ref / "keys.json");
  io::SafetensorsFile f = io::SafetensorsFile::open(out / "adapter_model.safetensors");
  std::set<std::string> got;
  for (const io::SafetensorsTensor& t : f.tensors()) {
    const std::string name(t.name);
    got.insert(name);
    ASSERT_TRUE(want_keys.contains(name)) << "PEFT does not save a key " << name;
    EXPECT_EQ(std::vector<int64_t>(t.shape.begin(), t.shape.end()),
              want_keys[name].get<std::vector<int64_t>>())
        << name;
    EXPECT_EQ(t.dtype_name, "F32");
    const std::vector<int64_t> shape(t.shape.begin(), t.shape.end());
    const float* v = reinterpret_cast<const float*>(t.data);
    if (name.find("lora_B") != std::string::npos) {
      for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(v[i], 0.0f) << name << " must start at zero";
    } else {
      const double bound = 1.0 / std::sqrt(static_cast<double>(shape[1]));  // kaiming_uniform(a=sqrt(5))
      double mx = 0;
      for (int64_t i = 0; i < t.numel(); ++i) mx = std::max(mx, std::abs(double(v[i])));
      EXPECT_LE(mx, bound) << name;
      EXPECT_GT(mx, 0.5 * bound) << name << " looks too small for kaiming_uniform";
    }
  }
  EXPECT_EQ(got.size(), want_keys.size());
  EXPECT_EQ(f.metadata().count("format"), 1u);

  // config fields
  json mine = read_json(out / "adapter_config.json");
  json theirs = read_json(ref / "adapter_config.json");
  for (const char* k : {"peft_type", "r", "lora_alpha", "lora_dropout", "use_rslora", "bias", "task_type",
                        "fan_in_fan_out", "init_lora_weights", "modules_to_save", "layers_to_transform",
                        "layers_pattern", "use_dora", "inference_mode", "rank_pattern", "alpha_pattern"}) {
    ASSERT_TRUE(mine.contains(k)) << "adapter_config.json lacks " << k;
    if (theirs[k].is_number()) {
      EXPECT_DOUBLE_EQ(mine[k].get<double>(), theirs[k].get<double>()) << k;
    } else {
      EXPECT_EQ(mine[k], theirs[k]) << k;
    }
  }
  EXPECT_EQ(mine["base_model_name_or_path"], r.model.path.string());
  // target_modules: PEFT matches a module when its name ends with ".<target>": every module PEFT targeted
  // must match one of ours, and each of ours must match one of PEFT's.
  std::vector<std::string> ours = mine["target_modules"].get<std::vector<std::string>>();
  std::vector<std::string> peft = theirs["target_modules"].get<std::vector<std::string>>();
  auto matches = [](const std::string& module, const std::string& target) {
    return module == target || (module.size() > target.size() &&
                                module.compare(module.size() - target.size(), target.size(), target) == 0 &&
                                module[module.size() - target.size() - 1] == '.');
  };
  for (const auto& m : peft) {
    EXPECT_TRUE(std::any_of(ours.begin(), ours.end(), [&](const std::string& t) { return matches(m, t); }))
        << m;
  }
  for (const auto& t : ours) {
    EXPECT_TRUE(std::any_of(peft.begin(), peft.end(), [&](const std::string& m) {
      return matches(m, t) || matches(t, m);
    })) << t;
  }
  fs::remove_all(out);
}

TEST(LoraPeftFormat, AllLinearMatchesPeft) {
  expect_peft_format({"peft.plugin=lora", "peft.r=4", "peft.lora_alpha=8", "peft.target_modules=all-linear"},
                     "all_linear");
}

TEST(LoraPeftFormat, NamedTargetsWithRsloraMatchPeft) {
  expect_peft_format({"peft.plugin=lora", "peft.r=2", "peft.lora_alpha=4", "peft.lora_dropout=0.1",
                      "peft.use_rslora=true", R"(peft.target_modules=["q_proj", "v_proj"])"},
                     "qv_rslora");
}

std::vector<float> logits_of(session::TrainingSession& s, const json& ids_json) {
  const auto rows = ids_json.get<std::vector<std::vector<int32_t>>>();
  const int64_t B = static_cast<int64_t>(rows.size()), T = static_cast<int64_t>(rows[0].size());
  std::vector<int32_t> ids, pos;
  for (const auto& row : rows) {
    for (int64_t t = 0; t < T; ++t)
      ids.push_back(row[static_cast<size_t>(t)]), pos.push_back(static_cast<int32_t>(t));
  }
  rt::Device& dev = s.host().device();
  rt::Tensor h = s.model().forward(rt::Tensor::from_vector(rt::Dims{B, T}, ENG_I32, dev, ids),
                                   rt::Tensor::from_vector(rt::Dims{B, T}, ENG_I32, dev, pos), rt::Tensor(),
                                   nullptr, false);
  return s.model()
      .logits(h.contiguous().view(rt::Dims{B * T, s.model().info().hidden_size}))
      .to_float_vector();
}

void expect_close(const std::vector<float>& got, const json& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double mx = 0;
  for (size_t i = 0; i < got.size(); ++i) mx = std::max(mx, std::abs(double(got[i]) - want[i].get<double>()));
  EXPECT_LT(mx, tol) << what << ": max |engine - PEFT| = " << mx;
}

TEST(LoraPeftFormat, PeftWrittenAdapterGivesPeftLogitsAndMerges) {
  auto reg = testing::registry();
  recipe::Recipe r =
      testing::load(*reg, "train/recipes/tiny_fixture.toml",
                    {"peft.plugin=lora", "peft.r=4", "peft.lora_alpha=8", "peft.target_modules=all-linear"});
  session::TrainingSession s(r, *reg, rt::cpu_device());
  const fs::path ref = testing::test_data("train/peft_qwen2_tiny/all_linear");
  json want = read_json(ref / "logits.json");
  json base = read_json(testing::test_data("train/peft_qwen2_tiny/base/logits.json"));
  expect_close(logits_of(s, want["input_ids"]), base["logits"], 1e-4, "base model (B = 0) vs transformers");

  s.load_weights(ref);
  expect_close(logits_of(s, want["input_ids"]), want["logits"], 1e-4, "PEFT adapter");

  rt::ParamStore& store = s.host().params();
  int merged = 0;
  for (size_t i = 0; i < store.size(); ++i) {
    rt::Param& p = store.at(i);
    if (p.peft_cookie == nullptr) continue;
    rt::Tensor& w = store.value(p);
    w.copy_from(s.peft()->merge(p.peft_cookie, w));
    p.peft_cookie = nullptr;
    ++merged;
  }
  EXPECT_EQ(merged, 14);
  expect_close(logits_of(s, want["input_ids"]), want["merged_logits"], 1e-4,
               "merged weights vs merge_and_unload");
}

TEST(LoraPeftFormat, LoadRefusesAnAdapterOfAnotherRank) {
  auto reg = testing::registry();
  recipe::Recipe r =
      testing::load(*reg, "train/recipes/tiny_fixture.toml",
                    {"peft.plugin=lora", "peft.r=8", "peft.lora_alpha=8", "peft.target_modules=all-linear"});
  session::TrainingSession s(r, *reg, rt::cpu_device());
  try {
    s.load_weights(testing::test_data("train/peft_qwen2_tiny/all_linear"));
    FAIL() << "loading an r=4 adapter into r=8 adapters must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("r=4"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace engine::train
