// The tiny_llama test plugin (tests/plugins/tiny_llama, raw C ABI) driven through the host table: it trains
// with plain SGD written against eng_host_api (param_value/param_grad + axpby_), and activation checkpointing
// of its blocks gives bitwise-identical gradients with a lower activation peak.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/abi/model.h"
#include "engine/host/host_api.hpp"
#include "engine/host/host_session.hpp"
#include "engine/host/tensor_handle.hpp"
#include "engine/runtime/kv_cache.hpp"

namespace engine::host {
namespace {

struct Plugin {
  void* lib = nullptr;
  const eng_model_vtable* vt = nullptr;
  Plugin() {
    lib = dlopen(TINY_LLAMA_PLUGIN, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return;
    auto negotiate = reinterpret_cast<eng_plugin_negotiate_fn>(dlsym(lib, ENG_PLUGIN_ENTRY_SYMBOL));
    if (negotiate == nullptr) return;
    eng_negotiate_request req{};
    req.struct_size = sizeof req;
    req.host_abi_min = ENG_ABI_VERSION;
    req.host_abi_max = ENG_ABI_VERSION;
    req.host = host_api();
    eng_plugin_descriptor d{};
    d.struct_size = sizeof d;
    if (negotiate(&req, &d) == ENG_OK && d.kind == ENG_KIND_MODEL)
      vt = static_cast<const eng_model_vtable*>(d.vtable);
  }
  ~Plugin() {
    if (lib != nullptr) dlclose(lib);
  }
};

// A model instance in its own session.
struct ModelRun {
  HostSession session;
  const eng_host_api* host = host_api();
  eng_ctx ctx;
  const eng_model_vtable* vt;
  void* model = nullptr;
  eng_model_info info{};

  ModelRun(const Plugin& p, const char* config, uint64_t seed) : session(rt::cpu_device(), seed), vt(p.vt) {
    ctx = session.context();
    EXPECT_EQ(vt->create(host, &ctx, config, "{}", &model), ENG_OK) << host->get_error(&ctx);
    session.set_declaring(true);
    EXPECT_EQ(vt->declare_params(model, &ctx), ENG_OK) << host->get_error(&ctx);
    session.set_declaring(false);
    info.struct_size = sizeof info;
    EXPECT_EQ(vt->info(model, &info), ENG_OK);
  }
  ~ModelRun() {
    if (model != nullptr) vt->destroy(model);
  }

  // Next-token loss over a fixed batch: (sum of token losses) / (label count); recorded on the tape.
  OwnedHandle loss(const std::vector<int32_t>& tokens, int64_t B, int64_t T) {
    std::vector<int32_t> ids(static_cast<size_t>(B * T)), pos(ids.size()), labels(ids.size());
    int64_t count = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        const size_t i = static_cast<size_t>(b * T + t);
        ids[i] = tokens[i];
        pos[i] = static_cast<int32_t>(t);
        labels[i] = t + 1 < T ? tokens[i + 1] : -100;
        count += t + 1 < T;
      }
    const int64_t shape[2] = {B, T}, flat[1] = {B * T};
    OwnedHandle hid, hpos, hlab, hidden, h2, loss;
    EXPECT_EQ(host->tensor_from_host(&ctx, ENG_I32, 2, shape, ids.data(), ids.size() * 4, hid.out()), ENG_OK);
    EXPECT_EQ(host->tensor_from_host(&ctx, ENG_I32, 2, shape, pos.data(), pos.size() * 4, hpos.out()),
              ENG_OK);
    EXPECT_EQ(host->tensor_from_host(&ctx, ENG_I32, 1, flat, labels.data(), labels.size() * 4, hlab.out()),
              ENG_OK);
    eng_batch batch{};
    batch.struct_size = sizeof batch;
    batch.input_ids = hid.get();
    batch.position_ids = hpos.get();
    EXPECT_EQ(vt->forward(model, &ctx, &batch, hidden.out()), ENG_OK) << host->get_error(&ctx);
    const int64_t rows[2] = {B * T, info.hidden_size};
    EXPECT_EQ(host->ops->reshape(&ctx, hidden.get(), 2, rows, h2.out()), ENG_OK) << host->get_error(&ctx);
    eng_param head = host->param_find(&ctx, info.lm_head_param);
    EXPECT_NE(head, nullptr);
    EXPECT_EQ(host->ops->linear_cross_entropy(&ctx, h2.get(), head, hlab.get(), -100,
                                              1.0 / static_cast<double>(count), loss.out()),
              ENG_OK)
        << host->get_error(&ctx);
    return loss;
  }

  double value(const OwnedHandle& t) {
    float v = 0;
    EXPECT_EQ(host->tensor_to_host(&ctx, t.get(), &v, sizeof v), ENG_OK);
    return v;
  }

  // Plain SGD through the host table: w -= lr * g, then g = 0.
  void sgd_step(double lr) {
    for (int64_t i = 0; i < host->param_count(&ctx); ++i) {
      eng_param p = host->param_at(&ctx, i);
      eng_param_info pi{};
      pi.struct_size = sizeof pi;
      ASSERT_EQ(host->param_info(p, &pi), ENG_OK);
      if (!(pi.flags & ENG_PARAM_TRAINABLE) || (pi.flags & ENG_PARAM_TIED)) continue;
      OwnedHandle v, g;
      ASSERT_EQ(host->param_value(&ctx, p, v.out()), ENG_OK);
      ASSERT_EQ(host->param_grad(&ctx, p, g.out()), ENG_OK);
      ASSERT_NE(g.get(), nullptr) << pi.name << " got no gradient";
      ASSERT_EQ(host->ops->axpby_(&ctx, v.get(), 1.0, g.get(), -lr), ENG_OK) << host->get_error(&ctx);
      ASSERT_EQ(host->ops->fill_(&ctx, g.get(), 0.0), ENG_OK);
    }
  }
};

std::vector<int32_t> random_tokens(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = d(gen);
  return v;
}

const char* kTinyConfig =
    R"({"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0})";

TEST(TinyLlama, PluginNegotiatesAndDeclaresLlamaParameters) {
  Plugin plugin;
  ASSERT_NE(plugin.vt, nullptr) << "could not load " << TINY_LLAMA_PLUGIN << ": " << dlerror();
  ModelRun run(plugin, kTinyConfig, 1);
  EXPECT_EQ(run.info.n_layers, 2);
  EXPECT_EQ(run.host->param_count(&run.ctx), 1 + 2 * 9 + 2);
  eng_param q = run.host->param_find(&run.ctx, "model.layers.1.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  eng_param_info pi{};
  pi.struct_size = sizeof pi;
  ASSERT_EQ(run.host->param_info(q, &pi), ENG_OK);
  EXPECT_EQ(pi.block, 1);
  EXPECT_EQ(pi.shape[0], 32);
  EXPECT_EQ(pi.shape[1], 32);
  ASSERT_EQ(
      run.host->param_info(run.host->param_find(&run.ctx, "model.layers.0.self_attn.k_proj.weight"), &pi),
      ENG_OK);
  EXPECT_EQ(pi.shape[0], 16);  // 2 kv heads x 8
  EXPECT_EQ(pi.block, 0);
}

TEST(TinyLlama, TrainsWithSgdThroughTheHostTable) {
  Plugin plugin;
  ASSERT_NE(plugin.vt, nullptr) << dlerror();
  ModelRun run(plugin, kTinyConfig, 7);
  const int64_t B = 2, T = 16;
  const std::vector<int32_t> tokens = random_tokens(static_cast<size_t>(B * T), 64, 3);
  std::vector<double> losses;
  for (int step = 0; step < 30; ++step) {
    OwnedHandle loss = run.loss(tokens, B, T);
    losses.push_back(run.value(loss));
    run.session.tape().backward(loss.get()->tensor);
    run.sgd_step(0.5);
  }
  std::printf("loss: first %.4f, step 10 %.4f, last %.4f\n", losses.front(), losses[10], losses.back());
  EXPECT_NEAR(losses.front(), std::log(64.0), 1.0);  // starts near uniform
  EXPECT_LT(losses.back(), 0.5 * losses.front()) << "first " << losses.front() << " last " << losses.back();
  for (size_t i = 1; i < losses.size(); ++i) EXPECT_TRUE(std::isfinite(losses[i]));
}

TEST(TinyLlama, CheckpointingGivesBitwiseIdenticalGradientsAndLowerPeakMemory) {
  Plugin plugin;
  ASSERT_NE(plugin.vt, nullptr) << dlerror();
  const char* config =
      R"({"vocab_size": 64, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
          "num_attention_heads": 4, "num_key_value_heads": 2})";
  const int64_t B = 2, T = 64;
  const std::vector<int32_t> tokens = random_tokens(static_cast<size_t>(B * T), 64, 11);
  rt::Device& dev = rt::cpu_device();
  std::vector<std::vector<float>> grads[2];
  int64_t peaks[2] = {0, 0};
  double losses[2] = {0, 0};
  for (int ckpt = 0; ckpt < 2; ++ckpt) {
    ModelRun run(plugin, config, 5);
    run.session.tape().set_checkpointing(ckpt == 1);
    run.session.params().materialize_all();
    // Warm-up pass so that every gradient buffer exists before the measured one.
    {
      OwnedHandle loss = run.loss(tokens, B, T);
      run.session.tape().backward(loss.get()->tensor);
    }
    run.session.params().zero_grads();
    const int64_t base = dev.memory_stats().current_bytes;
    dev.reset_peak_memory();
    {
      OwnedHandle loss = run.loss(tokens, B, T);
      losses[ckpt] = run.value(loss);
      run.session.tape().backward(loss.get()->tensor);
    }
    peaks[ckpt] = dev.memory_stats().peak_bytes - base;
    EXPECT_EQ(run.session.tape().last_backward_stats().blocks_replayed, ckpt == 1 ? 4 : 0);
    for (size_t i = 0; i < run.session.params().size(); ++i)
      grads[ckpt].push_back(run.session.params().grad(run.session.params().at(i)).to_float_vector());
  }
  EXPECT_EQ(losses[0], losses[1]);
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) {
    ASSERT_EQ(grads[0][i].size(), grads[1][i].size());
    EXPECT_EQ(std::memcmp(grads[0][i].data(), grads[1][i].data(), grads[0][i].size() * sizeof(float)), 0)
        << "parameter " << i;
  }
  EXPECT_LT(peaks[1], peaks[0]) << "without " << peaks[0] << " with " << peaks[1];
  std::printf("peak activation bytes: %lld without checkpointing, %lld with\n",
              static_cast<long long>(peaks[0]), static_cast<long long>(peaks[1]));
}

TEST(TinyLlama, GradientsAccumulateOverMicroBatches) {
  Plugin plugin;
  ASSERT_NE(plugin.vt, nullptr) << dlerror();
  const int64_t B = 1, T = 12;
  const std::vector<int32_t> b1 = random_tokens(12, 64, 21), b2 = random_tokens(12, 64, 22);
  auto grads_after = [&](const std::vector<std::vector<int32_t>>& batches) {
    ModelRun run(plugin, kTinyConfig, 9);
    for (const auto& b : batches) {
      OwnedHandle loss = run.loss(b, B, T);
      run.session.tape().backward(loss.get()->tensor);
    }
    std::vector<std::vector<float>> g;
    for (size_t i = 0; i < run.session.params().size(); ++i)
      g.push_back(run.session.params().grad(run.session.params().at(i)).to_float_vector());
    return g;
  };
  const auto g1 = grads_after({b1}), g2 = grads_after({b2}), g12 = grads_after({b1, b2});
  ASSERT_EQ(g12.size(), g1.size());
  for (size_t i = 0; i < g12.size(); ++i)
    for (size_t j = 0; j < g12[i].size(); ++j)
      ASSERT_EQ(g12[i][j], g1[i][j] + g2[i][j]) << "parameter " << i << " element " << j;  // one f32 addition
}

// hidden (1, n, C) of tokens at positions start.. with an optional cache, without recording.
std::vector<float> hidden_of(ModelRun& run, const std::vector<int32_t>& ids, int32_t start,
                             rt::KvCache* cache) {
  eng_ctx ctx = run.session.context(false);
  const int64_t n = static_cast<int64_t>(ids.size()), shape[2] = {1, n};
  std::vector<int32_t> pos(ids.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = start + static_cast<int32_t>(i);
  OwnedHandle hid, hpos, hidden;
  EXPECT_EQ(run.host->tensor_from_host(&ctx, ENG_I32, 2, shape, ids.data(), ids.size() * 4, hid.out()),
            ENG_OK);
  EXPECT_EQ(run.host->tensor_from_host(&ctx, ENG_I32, 2, shape, pos.data(), pos.size() * 4, hpos.out()),
            ENG_OK);
  eng_batch batch{};
  batch.struct_size = sizeof batch;
  batch.input_ids = hid.get();
  batch.position_ids = hpos.get();
  batch.kv_cache = cache != nullptr ? kv_cache_handle(*cache) : nullptr;
  EXPECT_EQ(run.vt->forward(run.model, &ctx, &batch, hidden.out()), ENG_OK) << run.host->get_error(&ctx);
  if (cache != nullptr) cache->advance(n);
  return hidden.get() != nullptr ? hidden.get()->tensor.to_float_vector() : std::vector<float>();
}

TEST(TinyLlama, GenerationWithAKvCacheMatchesTheFullForward) {
  Plugin plugin;
  ASSERT_NE(plugin.vt, nullptr) << dlerror();
  ModelRun run(plugin, kTinyConfig, 3);
  const std::vector<int32_t> ids = {5, 17, 2, 40, 33, 9};
  const std::vector<float> full = hidden_of(run, ids, 0, nullptr);  // (1, 6, 32)
  rt::KvCache cache(2, 1, 8, 2, 8, ENG_F32, rt::cpu_device());
  const std::vector<float> prefix = hidden_of(run, {ids.begin(), ids.begin() + 4}, 0, &cache);
  const std::vector<float> step5 = hidden_of(run, {ids[4]}, 4, &cache);
  const std::vector<float> step6 = hidden_of(run, {ids[5]}, 5, &cache);
  EXPECT_EQ(cache.length, 6);
  EXPECT_EQ(run.session.tape().size(), 0u);  // generation records nothing
  ASSERT_EQ(full.size(), 6u * 32);
  std::vector<float> cached = prefix;
  cached.insert(cached.end(), step5.begin(), step5.end());
  cached.insert(cached.end(), step6.begin(), step6.end());
  ASSERT_EQ(cached.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i) EXPECT_NEAR(cached[i], full[i], 1e-4) << i;
}

TEST(TinyLlama, ErrorsInsideTheModelReachTheCaller) {
  Plugin plugin;
  ASSERT_NE(plugin.vt, nullptr) << dlerror();
  ModelRun run(plugin, kTinyConfig, 1);
  // position_ids of the wrong shape: the rope op fails inside forward and the message names it.
  const int64_t shape[2] = {1, 4}, bad[2] = {1, 3};
  std::vector<int32_t> ids = {1, 2, 3, 4}, pos = {0, 1, 2};
  OwnedHandle hid, hpos, out;
  ASSERT_EQ(run.host->tensor_from_host(&run.ctx, ENG_I32, 2, shape, ids.data(), 16, hid.out()), ENG_OK);
  ASSERT_EQ(run.host->tensor_from_host(&run.ctx, ENG_I32, 2, bad, pos.data(), 12, hpos.out()), ENG_OK);
  eng_batch batch{};
  batch.struct_size = sizeof batch;
  batch.input_ids = hid.get();
  batch.position_ids = hpos.get();
  EXPECT_NE(run.vt->forward(run.model, &run.ctx, &batch, out.out()), ENG_OK);
  EXPECT_EQ(out.get(), nullptr);
  EXPECT_EQ(std::string(run.host->get_error(&run.ctx)).rfind("rope: ", 0), 0u)
      << run.host->get_error(&run.ctx);
}

}  // namespace
}  // namespace engine::host
