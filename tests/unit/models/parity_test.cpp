// The llama and qwen2 plugins against transformers (fixtures by scripts/fixtures/make_model_fixtures.py, in
// tests/data/models/parity/<name>): for a right-padded batch, logits at the real positions (relative error
// < 1e-4), the loss as transformers computes it (mean CE over label tokens after the causal shift, < 1e-4),
// the gradient of every parameter (< 1e-3), all in fp32 on the CPU against float64 references; the same
// logits when the rows are packed into one sequence with segment ids; and greedy generation with the KV cache
// equal to transformers' generate(do_sample=False).
// Relative error of a tensor: max |ours - reference| / max |reference|.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/host/host_api.hpp"
#include "engine/host/host_session.hpp"
#include "engine/host/tensor_handle.hpp"
#include "engine/io/safetensors.hpp"
#include "engine/plugins/plugin_registry.hpp"
#include "engine/plugins/plugin_search_path.hpp"
#include "engine/runtime/device.hpp"
#include "engine/session/generate.hpp"
#include "engine/session/model_loader.hpp"

namespace {

namespace fs = std::filesystem;
using engine::rt::Dims;
using engine::rt::Tensor;

fs::path fixture(const std::string& name) {
  return fs::path(std::getenv("ENGINE_TEST_DATA")) / "models" / "parity" / name;
}

std::vector<float> floats(const engine::io::SafetensorsTensor& t) {
  EXPECT_EQ(t.dtype_name, "F32") << t.name;
  std::vector<float> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

std::vector<int32_t> ints(const engine::io::SafetensorsTensor& t) {
  EXPECT_EQ(t.dtype_name, "I32") << t.name;
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

double rel_error(const std::vector<float>& ours, const std::vector<float>& ref) {
  EXPECT_EQ(ours.size(), ref.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < ref.size() && i < ours.size(); ++i) {
    diff = std::max(diff, std::abs(double(ours[i]) - double(ref[i])));
    scale = std::max(scale, std::abs(double(ref[i])));
  }
  return diff / std::max(scale, 1e-30);
}

// One model plugin instance with the fixture's weights, on the CPU.
struct Loaded {
  engine::rt::CpuDevice cpu{2};
  engine::host::HostSession session{cpu, 0};
  engine::plugins::PluginRegistry registry{engine::host::host_api()};
  std::unique_ptr<engine::session::ModelInstance> model;

  explicit Loaded(const std::string& name) {
    registry.load_search_path(engine::plugins::default_plugin_search_path());
    engine::session::ModelLoadOptions options;
    options.options_json = R"({"dtype": "float32"})";
    model = engine::session::load_model(session, registry, fixture(name), options);
  }
};

Tensor i32(engine::rt::Device& d, const Dims& shape, const std::vector<int32_t>& v) {
  return Tensor::from_host(shape, ENG_I32, d, v.data(), v.size() * 4);
}

class Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Parity, LogitsLossAndEveryGradientMatchTransformers) {
  Loaded m(GetParam());
  auto expected = engine::io::SafetensorsFile::open(fixture(GetParam()) / "expected.safetensors");
  auto grads = engine::io::SafetensorsFile::open(fixture(GetParam()) / "grads.safetensors");
  auto ids_t = expected.tensor("input_ids");
  const int64_t B = ids_t.shape[0], T = ids_t.shape[1];
  const int64_t C = m.model->info().hidden_size, V = m.model->info().vocab_size;
  std::vector<int32_t> ids = ints(ids_t), mask = ints(expected.tensor("attention_mask")),
                       labels = ints(expected.tensor("labels"));
  std::vector<int32_t> pos(static_cast<size_t>(B * T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) pos[size_t(b * T + t)] = static_cast<int32_t>(t);

  // forward with gradients: hidden (B,T,C)
  Tensor hidden = m.model->forward(i32(m.cpu, {B, T}, ids), i32(m.cpu, {B, T}, pos));
  ASSERT_EQ(hidden.shape(), (Dims{B, T, C}));

  // logits (B*T, V) at the real positions
  std::vector<float> logits =
      m.model->logits(hidden.detached().contiguous().view(Dims{B * T, C})).to_float_vector();
  std::vector<float> ref_logits = floats(expected.tensor("logits"));
  std::vector<float> ours_real, ref_real;
  for (int64_t r = 0; r < B * T; ++r) {
    if (!mask[size_t(r)]) continue;
    ours_real.insert(ours_real.end(), logits.begin() + r * V, logits.begin() + (r + 1) * V);
    ref_real.insert(ref_real.end(), ref_logits.begin() + r * V, ref_logits.begin() + (r + 1) * V);
  }
  EXPECT_LT(rel_error(ours_real, ref_real), 1e-4);

  // loss: position t predicts labels[t+1]; mean over label tokens (transformers' ForCausalLMLoss)
  std::vector<int32_t> shifted(labels.size(), -100);
  int64_t n = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t) {
      shifted[size_t(b * T + t)] = labels[size_t(b * T + t + 1)];
      n += shifted[size_t(b * T + t)] != -100;
    }
  ASSERT_GT(n, 0);
  const Tensor loss_t = m.model->loss(hidden, i32(m.cpu, {B * T}, shifted), 1.0 / double(n));
  const double ref_loss = floats(expected.tensor("loss"))[0];
  EXPECT_LT(std::abs(loss_t.item() - ref_loss) / std::abs(ref_loss), 1e-4)
      << loss_t.item() << " vs " << ref_loss;

  // every parameter's gradient
  m.session.tape().backward(loss_t);
  engine::rt::ParamStore& store = m.session.params();
  ASSERT_EQ(store.size(), grads.size()) << "the fixture has a gradient for every parameter";
  for (size_t i = 0; i < store.size(); ++i) {
    engine::rt::Param& p = store.at(i);
    Tensor g = store.grad(p);
    ASSERT_TRUE(g.defined()) << "no gradient reached " << p.name();
    EXPECT_LT(rel_error(g.to_float_vector(), floats(grads.tensor(p.name()))), 1e-3) << p.name();
  }
}

// The rows of the batch packed into one sequence (positions restart, segment ids separate them) give the same
// logits as the padded batch: the packing path of the attention.
TEST_P(Parity, PackedRowsGiveThePaddedBatchLogits) {
  Loaded m(GetParam());
  auto expected = engine::io::SafetensorsFile::open(fixture(GetParam()) / "expected.safetensors");
  auto ids_t = expected.tensor("input_ids");
  const int64_t B = ids_t.shape[0], T = ids_t.shape[1];
  const int64_t C = m.model->info().hidden_size, V = m.model->info().vocab_size;
  std::vector<int32_t> ids = ints(ids_t), mask = ints(expected.tensor("attention_mask"));
  std::vector<int32_t> packed, pos, seg;
  std::vector<int64_t> rows;  // index into the padded batch of each packed token
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T && mask[size_t(b * T + t)]; ++t) {
      packed.push_back(ids[size_t(b * T + t)]);
      pos.push_back(static_cast<int32_t>(t));
      seg.push_back(static_cast<int32_t>(b));
      rows.push_back(b * T + t);
    }
  const int64_t L = static_cast<int64_t>(packed.size());
  Tensor hidden = m.model->forward(i32(m.cpu, {1, L}, packed), i32(m.cpu, {1, L}, pos),
                                   i32(m.cpu, {1, L}, seg), nullptr, false);
  std::vector<float> logits = m.model->logits(hidden.contiguous().view(Dims{L, C})).to_float_vector();
  std::vector<float> ref_logits = floats(expected.tensor("logits")), ref;
  for (int64_t r : rows) ref.insert(ref.end(), ref_logits.begin() + r * V, ref_logits.begin() + (r + 1) * V);
  EXPECT_LT(rel_error(logits, ref), 1e-4);
}

TEST_P(Parity, GreedyGenerationWithTheKvCacheEqualsTransformers) {
  Loaded m(GetParam());
  std::ifstream f(fixture(GetParam()) / "generation.json");
  std::stringstream s;
  s << f.rdbuf();
  nlohmann::json g = nlohmann::json::parse(s.str());
  ASSERT_FALSE(g["cases"].empty());
  for (const auto& c : g["cases"]) {
    std::vector<int32_t> prompt = c["prompt"].get<std::vector<int32_t>>();
    std::vector<int32_t> want = c["new_tokens"].get<std::vector<int32_t>>();
    engine::session::GenerateOptions o;
    o.max_new_tokens = g["max_new_tokens"].get<int64_t>();
    std::vector<int32_t> streamed;
    std::vector<int32_t> got =
        engine::session::generate(*m.model, prompt, o, [&](int32_t id) { streamed.push_back(id); });
    EXPECT_EQ(got, want) << "prompt of " << prompt.size() << " tokens";
    EXPECT_EQ(streamed, got);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, Parity,
                         ::testing::Values("qwen2_tied", "qwen2_untied", "llama3_tied", "llama2_untied"));

}  // namespace
