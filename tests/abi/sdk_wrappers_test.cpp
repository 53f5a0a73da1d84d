// The C++ wrappers (engine/cpp) driven through a mock host table, compiled as C++17: negotiation, the
// exception edge, tensor reference counting, NoGrad, and optional table entries.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "engine/cpp/sdk.hpp"

namespace {

using engine::sdk::Host;
using engine::sdk::Param;
using engine::sdk::Tensor;

// ---- a mock host: tensors are refcounted scalars, ops record the grad flag they saw ----
struct MockTensor {
  int refs = 1;
  double value = 0;
};
struct Mock {
  int live = 0;
  std::string error;
  eng_status error_code = ENG_OK;
  int last_grad_enabled = -1;
  std::map<std::string, double> state;
} g;

eng_tensor make(double v) {
  ++g.live;
  return reinterpret_cast<eng_tensor>(new MockTensor{1, v});
}
MockTensor* T(eng_tensor t) { return reinterpret_cast<MockTensor*>(t); }

const eng_host_api* mock_host() {
  static eng_op_table ops = [] {
    eng_op_table o{};
    o.struct_size = sizeof(o);
    o.scale = [](const eng_ctx* ctx, eng_tensor x, double s, eng_tensor* out) -> eng_status {
      g.last_grad_enabled = ctx->grad_enabled;
      if (s < 0) {
        g.error = "scale: negative factor";
        return ENG_ERR_INVALID_ARGUMENT;
      }
      *out = make(T(x)->value * s);
      return ENG_OK;
    };
    o.axpby_ = [](const eng_ctx*, eng_tensor dst, double a, eng_tensor src, double b) -> eng_status {
      T(dst)->value = a * T(dst)->value + b * T(src)->value;
      return ENG_OK;
    };
    return o;
  }();
  static eng_host_api api = [] {
    eng_host_api h{};
    h.struct_size = sizeof(h);
    h.abi_version = ENG_ABI_VERSION;
    h.log = [](const eng_ctx*, eng_log_level, const char*) {};
    h.set_error = [](const eng_ctx*, eng_status code, const char* m) {
      g.error = m;
      g.error_code = code;
    };
    h.get_error = [](const eng_ctx*) { return g.error.c_str(); };
    h.tensor_retain = [](eng_tensor t) { ++T(t)->refs; };
    h.tensor_release = [](eng_tensor t) {
      if (t != nullptr && --T(t)->refs == 0) {
        --g.live;
        delete T(t);
      }
    };
    h.ops = &ops;
    h.state_put = [](const eng_ctx*, eng_state, const char* key, eng_tensor t) -> eng_status {
      g.state[key] = T(t)->value;
      return ENG_OK;
    };
    h.state_get = [](const eng_ctx*, eng_state, const char* key, eng_tensor* out) -> eng_status {
      auto it = g.state.find(key);
      if (it == g.state.end()) return ENG_ERR_NOT_FOUND;
      *out = make(it->second);
      return ENG_OK;
    };
    return h;
  }();
  return &api;
}

eng_ctx make_ctx() {
  eng_ctx c{};
  c.struct_size = sizeof(c);
  c.device_type = ENG_DEVICE_CPU;
  c.grad_enabled = 1;
  c.world_size = 1;
  return c;
}

// ---- a plugin written with the wrappers ----
class Momentum : public engine::sdk::Optimizer {
 public:
  Momentum(Host&, const std::string& options_json) {
    engine::sdk::Json o = engine::sdk::Json::parse(options_json);
    beta_ = o.get("beta", 0.9);
    if (beta_ >= 1) throw engine::sdk::Error("beta must be below 1", ENG_ERR_INVALID_ARGUMENT);
  }
  void add_param(Host&, Param, const eng_param_group& group) override { decay_ = group.weight_decay; }
  void step(Host& host, const eng_optim_step& s) override {
    if (s.step < 0) throw std::runtime_error("negative step");
    if (s.step == 99) throw 42;  // not even an exception class
    Tensor a = host.adopt(make(2.0));
    Tensor b = host.scale(a, s.lr);  // 2 * lr
    host.axpby_(a, 1.0, b, 1.0);     // a = 2 + 2 lr
    host.state_put(nullptr, "a", a);
  }
  void save_state(Host& host, eng_state st) override { host.state_put(st, "beta", host.adopt(make(beta_))); }
  void load_state(Host& host, eng_state st) override {
    beta_ = host.to_vector<float>(host.state_get(st, "beta"))[0];
  }
  double state_bytes_per_element() override { return 4.0 * decay_; }

 private:
  double beta_ = 0.9;
  double decay_ = 0;
};

}  // namespace

ENGINE_REGISTER_OPTIMIZER(Momentum, "momentum", "1.2.3", "test", R"({"properties": {}})", ENG_CAP_DEVICE_CPU)

namespace {

eng_status negotiate(uint32_t lo, uint32_t hi, eng_plugin_descriptor* d) {
  eng_negotiate_request req{};
  req.struct_size = sizeof(req);
  req.host_abi_min = lo;
  req.host_abi_max = hi;
  req.host = mock_host();
  d->struct_size = sizeof(*d);
  return engine_plugin_negotiate(&req, d);
}

TEST(SdkWrappers, NegotiatePicksTheVersionInTheHostRangeElseRefuses) {
  eng_plugin_descriptor d{};
  ASSERT_EQ(negotiate(ENG_ABI_MAKE_VERSION(1, 0), ENG_ABI_VERSION, &d), ENG_OK);
  EXPECT_EQ(d.abi_version, ENG_ABI_VERSION);
  EXPECT_EQ(d.kind, ENG_KIND_OPTIMIZER);
  EXPECT_STREQ(d.name, "momentum");
  EXPECT_STREQ(d.version, "1.2.3");
  EXPECT_EQ(d.capabilities, ENG_CAP_DEVICE_CPU);
  ASSERT_NE(d.vtable, nullptr);
  eng_plugin_descriptor old{};
  EXPECT_EQ(negotiate(ENG_ABI_MAKE_VERSION(2, 0), ENG_ABI_MAKE_VERSION(2, 3), &old), ENG_ERR_VERSION);
  EXPECT_EQ(old.abi_version, ENG_ABI_VERSION);  // the version it was built for
  EXPECT_EQ(old.vtable, nullptr);
}

TEST(SdkWrappers, ADescriptorSizedByAnOlderHostIsWrittenOnlyUpToItsSize) {
  eng_negotiate_request req{};
  req.struct_size = sizeof(req);
  req.host_abi_min = req.host_abi_max = ENG_ABI_VERSION;
  struct {
    eng_plugin_descriptor d;
    uint64_t canary;
  } buf{};
  buf.canary = 0xC0FFEE;
  buf.d.struct_size = offsetof(eng_plugin_descriptor, name);  // a host that knew fewer fields
  ASSERT_EQ(engine_plugin_negotiate(&req, &buf.d), ENG_OK);
  EXPECT_EQ(buf.d.struct_size, offsetof(eng_plugin_descriptor, name));
  EXPECT_EQ(buf.d.name, nullptr);
  EXPECT_EQ(buf.canary, 0xC0FFEEu);
}

const eng_optimizer_vtable* table() {
  eng_plugin_descriptor d{};
  negotiate(ENG_ABI_VERSION, ENG_ABI_VERSION, &d);
  return static_cast<const eng_optimizer_vtable*>(d.vtable);
}

TEST(SdkWrappers, ExceptionsBecomeStatusCodesWithTheMessageSetThroughTheHost) {
  eng_ctx ctx = make_ctx();
  void* self = nullptr;
  EXPECT_EQ(table()->create(mock_host(), &ctx, R"({"beta": 1.5})", &self), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(self, nullptr);
  EXPECT_EQ(g.error, "beta must be below 1");
  EXPECT_EQ(table()->create(mock_host(), &ctx, "{not json", &self), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(g.error.find("invalid JSON"), std::string::npos);

  ASSERT_EQ(table()->create(mock_host(), &ctx, R"({"beta": 0.5})", &self), ENG_OK);
  eng_optim_step s{};
  s.struct_size = sizeof(s);
  s.step = -1;
  EXPECT_EQ(table()->step(self, &ctx, &s), ENG_ERR_INTERNAL);
  EXPECT_EQ(g.error, "negative step");
  s.step = 99;
  EXPECT_EQ(table()->step(self, &ctx, &s), ENG_ERR_INTERNAL);
  EXPECT_NE(g.error.find("unknown type"), std::string::npos);
  // A failing host call surfaces the host's message and status.
  s.step = 1;
  s.lr = -1;
  EXPECT_EQ(table()->step(self, &ctx, &s), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(g.error, "scale: negative factor");
  EXPECT_EQ(g.live, 0) << "a tensor leaked on the error path";
  table()->destroy(self);
}

TEST(SdkWrappers, TensorsAreReleasedAndOpsSeeTheContext) {
  eng_ctx ctx = make_ctx();
  void* self = nullptr;
  ASSERT_EQ(table()->create(mock_host(), &ctx, "{}", &self), ENG_OK);
  eng_optim_step s{};
  s.struct_size = sizeof(s);
  s.step = 1;
  s.lr = 0.5;
  ASSERT_EQ(table()->step(self, &ctx, &s), ENG_OK);
  EXPECT_EQ(g.state["a"], 3.0);  // 2 + 2 * 0.5
  EXPECT_EQ(g.last_grad_enabled, 1);
  EXPECT_EQ(g.live, 0);
  table()->destroy(self);
}

TEST(SdkWrappers, NoGradScopesAContextCopy) {
  eng_ctx ctx = make_ctx();
  Host host(mock_host(), &ctx);
  Tensor x = host.adopt(make(1.0));
  {
    engine::sdk::NoGrad no_grad(host);
    Tensor y = host.scale(x, 2.0);
    EXPECT_EQ(g.last_grad_enabled, 0);
    EXPECT_FALSE(host.grad_enabled());
  }
  EXPECT_TRUE(host.grad_enabled());
  EXPECT_EQ(host.ctx(), &ctx);
  Tensor z = host.scale(x, 2.0);
  EXPECT_EQ(g.last_grad_enabled, 1);
  Tensor copy = z;  // retain
  EXPECT_EQ(T(z.get())->refs, 2);
  EXPECT_TRUE(host.state_try_get(nullptr, "absent").get() == nullptr);
  EXPECT_THROW(host.state_get(nullptr, "absent"), engine::sdk::Error);
}

TEST(SdkWrappers, JsonReadsOptions) {
  auto j = engine::sdk::Json::parse(
      R"({"lr": 1e-3, "t": ["q", "k\u00e9"], "on": true, "n": 3, "o": {"x": null}})");
  EXPECT_DOUBLE_EQ(j["lr"].as_double(), 1e-3);
  EXPECT_EQ(j["t"][1].as_string(), "k\xc3\xa9");
  EXPECT_TRUE(j.get("on", false));
  EXPECT_EQ(j.get("n", 0), 3);
  EXPECT_EQ(j.get("missing", 7), 7);
  EXPECT_EQ(j["o"].get("x", 2.5), 2.5);
  try {
    j["lr"].as_string();
    FAIL();
  } catch (const engine::sdk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'lr' must be a string"), std::string::npos) << e.what();
  }
  EXPECT_THROW(engine::sdk::Json::parse("[1, 2"), engine::sdk::Error);
}

}  // namespace
