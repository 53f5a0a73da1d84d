// Tests of the wrappers that plug a run's quantizer, PEFT and parallel-strategy plugins into the engine
// (engine/host/plugin_quantizer.cpp, plugin_peft.cpp, plugin_parallel.cpp), with plugin tables written
// against the raw C ABI.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/abi/parallel.h"
#include "engine/abi/peft.h"
#include "engine/abi/quantizer.h"
#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"
#include "engine/host/host_session.hpp"
#include "engine/host/plugin_parallel.hpp"
#include "engine/host/plugin_peft.hpp"
#include "engine/host/plugin_quantizer.hpp"
#include "engine/host/tensor_handle.hpp"

namespace engine::host {
namespace {

// ---- a quantizer that keeps an f32 copy and multiplies with matmul ----------------------------------------

struct Q {
  const eng_host_api* host;
  int live = 0;
};

eng_status q_create(const eng_host_api* host, const eng_ctx*, const char* options, void** self) {
  if (std::strstr(options, "\"bad\"") != nullptr) return ENG_ERR_INVALID_ARGUMENT;
  *self = new Q{host};
  return ENG_OK;
}
void q_destroy(void* self) { delete static_cast<Q*>(self); }
int32_t q_takes(void*, const eng_param_info* p) { return p->role == ENG_ROLE_LINEAR ? 1 : 0; }
eng_status q_quantize(void* self, const eng_ctx* ctx, eng_param, eng_tensor value, void** state) {
  Q* q = static_cast<Q*>(self);
  eng_tensor w = nullptr;
  if (eng_status st = q->host->ops->cast(ctx, value, ENG_F32, &w); st != ENG_OK) return st;
  ++q->live;
  *state = w;
  return ENG_OK;
}
eng_status q_linear(void* self, const eng_ctx* ctx, void* state, eng_tensor x, eng_tensor* out) {
  return static_cast<Q*>(self)->host->ops->matmul(ctx, x, static_cast<eng_tensor>(state), 0, 1, out);
}
eng_status q_dequantize(void* self, const eng_ctx* ctx, void* state, eng_dtype dtype, eng_tensor* out) {
  return static_cast<Q*>(self)->host->ops->cast(ctx, static_cast<eng_tensor>(state), dtype, out);
}
void q_free_state(void* self, void* state) {
  Q* q = static_cast<Q*>(self);
  --q->live;
  q->host->tensor_release(static_cast<eng_tensor>(state));
}
double q_bytes(void*) { return 4.0; }

const eng_quantizer_vtable kQuant = {sizeof(eng_quantizer_vtable),
                                     q_create,
                                     q_destroy,
                                     q_takes,
                                     q_quantize,
                                     q_linear,
                                     q_dequantize,
                                     q_free_state,
                                     q_bytes,
                                     nullptr,
                                     nullptr,
                                     nullptr};

// ---- a PEFT method adding x A^T with one full-size adapter per linear -------------------------------------

struct P {
  const eng_host_api* host;
  std::vector<std::string> names;
};

eng_status p_create(const eng_host_api* host, const eng_ctx*, const char*, void** self) {
  *self = new P{host, {}};
  return ENG_OK;
}
void p_destroy(void* self) { delete static_cast<P*>(self); }
eng_status p_attach(void* self, const eng_ctx* ctx) {
  P* p = static_cast<P*>(self);
  const int64_t n = p->host->param_count(ctx);
  for (int64_t i = 0; i < n; ++i) {
    eng_param base = p->host->param_at(ctx, i);
    eng_param_info info{};
    info.struct_size = sizeof info;
    p->host->param_info(base, &info);
    if (info.role != ENG_ROLE_LINEAR) continue;
    p->names.push_back(std::string(info.name) + ".adapter");
    eng_param_decl d{};
    d.struct_size = sizeof d;
    d.name = p->names.back().c_str();
    d.ndim = 2;
    d.shape[0] = info.shape[0];
    d.shape[1] = info.shape[1];
    d.dtype = ENG_F32;
    d.role = ENG_ROLE_ADAPTER;
    d.flags = ENG_PARAM_TRAINABLE;
    d.init = ENG_INIT_UNIFORM;
    d.init_arg = 0.5;
    eng_param adapter = nullptr;
    if (eng_status st = p->host->param_declare(ctx, &d, &adapter); st != ENG_OK) return st;
    if (eng_status st = p->host->param_set_trainable(ctx, base, 0); st != ENG_OK) return st;
    if (eng_status st = p->host->peft_attach(ctx, base, adapter); st != ENG_OK) return st;
  }
  return ENG_OK;
}
eng_status p_linear(void* self, const eng_ctx* ctx, void* cookie, eng_tensor x, eng_tensor base,
                    eng_tensor* out) {
  const eng_host_api* h = static_cast<P*>(self)->host;
  eng_tensor a = nullptr, delta = nullptr;
  eng_status st = h->ops->param(ctx, static_cast<eng_param>(cookie), &a);
  if (st == ENG_OK) st = h->ops->matmul(ctx, x, a, 0, 1, &delta);
  if (st == ENG_OK) st = h->ops->add(ctx, base, delta, out);
  h->tensor_release(a);
  h->tensor_release(delta);
  return st;
}
eng_status p_merge(void* self, const eng_ctx* ctx, void* cookie, eng_tensor w, eng_tensor* out) {
  const eng_host_api* h = static_cast<P*>(self)->host;
  eng_tensor a = nullptr;
  eng_status st = h->param_value(ctx, static_cast<eng_param>(cookie), &a);
  if (st == ENG_OK) st = h->ops->add(ctx, w, a, out);
  h->tensor_release(a);
  return st;
}
eng_status p_save(void*, const eng_ctx*, const char*, const char*) { return ENG_OK; }
eng_status p_load(void*, const eng_ctx*, const char*) { return ENG_OK; }

const eng_peft_vtable kPeft = {
    sizeof(eng_peft_vtable), p_create, p_destroy, p_attach, p_linear, p_merge, p_save, p_load};

// ---- a parallel strategy that records its hooks -----------------------------------------------------------

struct S {
  const eng_host_api* host;
  std::vector<std::string> events;
};

eng_status s_create(const eng_host_api* host, const eng_ctx*, const char*, void** self) {
  *self = new S{host, {}};
  return ENG_OK;
}
void s_destroy(void* self) { delete static_cast<S*>(self); }
eng_status s_setup(void* self, const eng_ctx*) {
  static_cast<S*>(self)->events.push_back("setup");
  return ENG_OK;
}
eng_status s_before(void* self, const eng_ctx*, int32_t block, eng_phase phase) {
  static_cast<S*>(self)->events.push_back("before " + std::to_string(block) + (phase ? " bwd" : " fwd"));
  return ENG_OK;
}
eng_status s_after(void* self, const eng_ctx*, int32_t block, eng_phase phase) {
  static_cast<S*>(self)->events.push_back("after " + std::to_string(block) + (phase ? " bwd" : " fwd"));
  return ENG_OK;
}
eng_status s_grad_ready(void* self, const eng_ctx*, eng_param p) {
  S* s = static_cast<S*>(self);
  eng_param_info info{};
  info.struct_size = sizeof info;
  s->host->param_info(p, &info);
  s->events.push_back(std::string("grad ") + info.name);
  return ENG_OK;
}
eng_status s_before_step(void* self, const eng_ctx* ctx) {
  S* s = static_cast<S*>(self);
  s->events.push_back("before_step");
  s->host->set_error(ctx, ENG_ERR_INTERNAL, "reduce failed on rank 0");
  return ENG_ERR_INTERNAL;
}

const eng_parallel_vtable kParallel = {sizeof(eng_parallel_vtable),
                                       s_create,
                                       s_destroy,
                                       s_setup,
                                       s_before,
                                       s_after,
                                       s_grad_ready,
                                       s_before_step,
                                       nullptr,
                                       nullptr,
                                       nullptr,
                                       nullptr,
                                       nullptr,
                                       nullptr,
                                       nullptr};

eng_param declare(HostSession& s, const char* name, std::vector<int64_t> shape, eng_param_role role,
                  uint32_t flags) {
  eng_ctx ctx = s.context();
  eng_param_decl d{};
  d.struct_size = sizeof d;
  d.name = name;
  d.ndim = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) d.shape[i] = shape[i];
  d.dtype = ENG_BF16;
  d.role = role;
  d.flags = flags;
  d.init = ENG_INIT_NORMAL;
  d.init_arg = 0.5;
  eng_param p = nullptr;
  EXPECT_EQ(host_api()->param_declare(&ctx, &d, &p), ENG_OK) << host_api()->get_error(&ctx);
  return p;
}

TEST(PluginAdapters, QuantizerPeftAndParallelPluginsComposeThroughTheSeams) {
  HostSession session(rt::cpu_device(), 21);
  const eng_host_api* host = host_api();
  eng_ctx ctx = session.context();
  session.set_declaring(true);
  ASSERT_EQ(host->block_begin(&ctx, 0), ENG_OK);
  eng_param w =
      declare(session, "model.layers.0.mlp.up_proj.weight", {3, 4}, ENG_ROLE_LINEAR, ENG_PARAM_TRAINABLE);
  ASSERT_EQ(host->block_end(&ctx, 0), ENG_OK);
  session.set_declaring(false);
  rt::ParamStore& store = session.params();

  PluginPeft peft(session, host, &kPeft, "test-peft", "{}");
  peft.attach();
  session.set_peft(&peft);
  eng_param adapter = host->param_find(&ctx, "model.layers.0.mlp.up_proj.weight.adapter");
  ASSERT_NE(adapter, nullptr);
  EXPECT_FALSE(param_of(w).trainable());
  EXPECT_EQ(store.value(param_of(w)).dtype(), ENG_BF16);  // frozen: back to its storage dtype
  const std::vector<double> dense = store.value(param_of(w)).to_double_vector();

  PluginQuantizer quant(session, host, &kQuant, "test-quant", "{}");
  store.assign_quantizer(quant);
  session.set_quantizer(&quant);
  EXPECT_TRUE(param_of(w).quantized());
  EXPECT_EQ(static_cast<Q*>(quant.self())->live, 1);
  // The dequantized weight is the (frozen, bf16) value.
  EXPECT_EQ(quant.dequantize(param_of(w).quant_state, ENG_F32).to_double_vector(), dense);

  PluginParallel par(session, host, &kParallel, "test-par", "{}");
  par.setup();

  const std::vector<float> xv = {0.5f, -1.f, 2.f, 0.25f};
  OwnedHandle x, y;
  const int64_t xs[2] = {1, 4};
  ASSERT_EQ(host->tensor_from_host(&ctx, ENG_F32, 2, xs, xv.data(), 16, x.out()), ENG_OK);
  ASSERT_EQ(host->block_begin(&ctx, 0), ENG_OK);
  ASSERT_EQ(host->ops->linear(&ctx, x.get(), w, nullptr, y.out()), ENG_OK) << host->get_error(&ctx);
  ASSERT_EQ(host->block_end(&ctx, 0), ENG_OK);
  const std::vector<double> a = store.value(param_of(adapter)).to_double_vector();
  const std::vector<float> yv = y.get()->tensor.to_float_vector();
  for (int o = 0; o < 3; ++o) {
    double want = 0;
    for (int i = 0; i < 4; ++i)
      want += xv[static_cast<size_t>(i)] *
              (dense[static_cast<size_t>(o * 4 + i)] + a[static_cast<size_t>(o * 4 + i)]);
    EXPECT_NEAR(yv[static_cast<size_t>(o)], want, 1e-5);
  }
  session.tape().backward(y.get()->tensor, rt::Tensor::full(rt::Dims{1, 3}, ENG_F32, rt::cpu_device(), 1.0));
  const std::vector<double> ga = store.grad(param_of(adapter)).to_double_vector();
  for (int o = 0; o < 3; ++o)
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(ga[static_cast<size_t>(o * 4 + i)], xv[static_cast<size_t>(i)], 1e-6);
  const std::vector<std::string> want = {"setup",
                                         "before 0 fwd",
                                         "after 0 fwd",
                                         "before 0 bwd",
                                         "grad model.layers.0.mlp.up_proj.weight.adapter",
                                         "after 0 bwd"};
  EXPECT_EQ(static_cast<S*>(par.self())->events, want);

  // The merged weight is base + adapter.
  const std::vector<double> merged =
      peft.merge(param_of(w).peft_cookie, quant.dequantize(param_of(w).quant_state, ENG_F32))
          .to_double_vector();
  for (size_t i = 0; i < merged.size(); ++i) EXPECT_NEAR(merged[i], dense[i] + a[i], 1e-6);

  // A failing hook surfaces as an engine::Error carrying the plugin's message.
  try {
    par.before_step();
    FAIL() << "before_step must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("test-par: before_step failed: reduce failed on rank 0"),
              std::string::npos)
        << e.what();
    EXPECT_EQ(e.status(), ENG_ERR_INTERNAL);
  }
}

TEST(PluginAdapters, WrappersUnplugThemselvesAndReportCreateFailures) {
  HostSession session(rt::cpu_device(), 1);
  const eng_host_api* host = host_api();
  eng_ctx ctx = session.context();
  eng_param w = declare(session, "w", {2, 2}, ENG_ROLE_LINEAR, 0);
  {
    PluginQuantizer quant(session, host, &kQuant, "test-quant", "{}");
    session.params().assign_quantizer(quant);
    session.set_quantizer(&quant);
    EXPECT_EQ(static_cast<Q*>(quant.self())->live,
              0);  // nothing materialised yet: quantized when initialised
    session.params().materialize_all();
    EXPECT_EQ(static_cast<Q*>(quant.self())->live, 1);
  }  // destroyed before the session: its state is freed through it, and it is unplugged
  EXPECT_EQ(session.quantizer(), nullptr);
  EXPECT_FALSE(param_of(w).quantized());
  EXPECT_EQ(param_of(w).quant_state, nullptr);
  try {
    PluginQuantizer bad(session, host, &kQuant, "test-quant", "{\"bad\": 1}");
    FAIL() << "create must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("test-quant plugin: create failed"), std::string::npos) << e.what();
  }
  (void)ctx;
}

}  // namespace
}  // namespace engine::host
