// The C++ wrappers (engine/cpp) driven through a mock host table, compiled as C++17: negotiation, the
// exception edge, tensor reference counting, NoGrad, and optional table entries.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

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
    o.sqrt = [](const eng_ctx*, eng_tensor x, eng_tensor* out) -> eng_status {
      *out = make(std::sqrt(T(x)->value));
      return ENG_OK;
    };
    o.foreach_addcdiv_ = [](const eng_ctx*, int32_t n, const eng_tensor* dst, double a, const eng_tensor* x,
                            const eng_tensor* y, double c, double y_scale, double eps, int32_t sqrt_y) -> eng_status {
      for (int32_t i = 0; i < n; ++i) {
        const double d = y_scale * T(y[i])->value;
        T(dst[i])->value = a * T(dst[i])->value + c * T(x[i])->value / ((sqrt_y ? std::sqrt(d) : d) + eps);
      }
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

// ---- the other kinds' adapters, driven through their tables without a negotiate symbol ----
class Doubler : public engine::sdk::Model {
 public:
  Doubler(Host&, const std::string& config, const std::string&)
      : arch_(engine::sdk::Json::parse(config)["arch"].as_string()) {}
  eng_model_info info() override {
    eng_model_info i{};
    i.n_layers = 3;
    i.architecture = arch_.c_str();
    return i;
  }
  void declare_params(Host&) override {}
  Tensor forward(Host& host, const engine::sdk::Batch& b) override {
    if (b.segment_ids) throw engine::sdk::Error("packing is not supported", ENG_ERR_UNSUPPORTED);
    return host.scale(b.input_ids, 2.0);
  }

 private:
  std::string arch_;
};

TEST(SdkWrappers, ModelForwardHandsOneReferenceAndBorrowsTheBatch) {
  using Adapter = engine::sdk::detail::ModelAdapter<Doubler>;
  const eng_model_vtable t = Adapter::vtable();
  EXPECT_EQ(t.preset_config, nullptr);  // Doubler has no static preset_config
  eng_ctx ctx = make_ctx();
  void* self = nullptr;
  ASSERT_EQ(t.create(mock_host(), &ctx, R"({"arch": "Doubler"})", "{}", &self), ENG_OK);
  eng_model_info info{};
  info.struct_size = offsetof(eng_model_info, architecture);  // an older reader: architecture not written
  ASSERT_EQ(t.info(self, &info), ENG_OK);
  EXPECT_EQ(info.n_layers, 3);
  EXPECT_EQ(info.architecture, nullptr);

  eng_tensor ids = make(21.0);
  eng_batch batch{};
  batch.struct_size = sizeof(batch);
  batch.input_ids = ids;
  eng_tensor hidden = nullptr;
  ASSERT_EQ(t.forward(self, &ctx, &batch, &hidden), ENG_OK);
  EXPECT_EQ(T(hidden)->value, 42.0);
  EXPECT_EQ(T(hidden)->refs, 1);  // the caller's one reference
  EXPECT_EQ(T(ids)->refs, 1);     // borrowed, given back
  batch.segment_ids = ids;
  eng_tensor placeholder = make(0.0);
  eng_tensor failed = placeholder;
  EXPECT_EQ(t.forward(self, &ctx, &batch, &failed), ENG_ERR_UNSUPPORTED);
  EXPECT_EQ(failed, nullptr);  // a failing entry leaves no handle behind
  mock_host()->tensor_release(placeholder);
  EXPECT_EQ(g.error, "packing is not supported");
  mock_host()->tensor_release(ids);
  mock_host()->tensor_release(hidden);
  EXPECT_EQ(g.live, 0);
  t.destroy(self);
}

int g_states_alive = 0;
struct Scaled : engine::sdk::Quantizer::State {
  Scaled() { ++g_states_alive; }
  ~Scaled() override { --g_states_alive; }
  double factor = 0;
};

class Halver : public engine::sdk::Quantizer {
 public:
  Halver(Host&, const std::string&) {}
  bool takes(const engine::sdk::ParamInfo& p) override { return p.role == ENG_ROLE_LINEAR; }
  std::unique_ptr<State> quantize(Host&, Param, const Tensor& value) override {
    auto s = std::make_unique<Scaled>();
    s->factor = T(value.get())->value / 2;
    return s;
  }
  Tensor linear(Host& host, State& s, const Tensor& x) override {
    return host.scale(x, static_cast<Scaled&>(s).factor);
  }
  Tensor dequantize(Host& host, State& s, eng_dtype) override {
    return host.adopt(make(static_cast<Scaled&>(s).factor));
  }
  double bytes_per_element() override { return 0.5; }
};

TEST(SdkWrappers, QuantizerStatesGoToTheEngineAndComeBackToFreeState) {
  const eng_quantizer_vtable t = engine::sdk::detail::QuantizerAdapter<Halver>::vtable();
  EXPECT_EQ(t.save_state, nullptr);
  EXPECT_EQ(t.load_state, nullptr);
  eng_ctx ctx = make_ctx();
  void* self = nullptr;
  ASSERT_EQ(t.create(mock_host(), &ctx, "{}", &self), ENG_OK);
  eng_param_info linear{};
  linear.struct_size = sizeof(linear);
  linear.role = ENG_ROLE_LINEAR;
  EXPECT_EQ(t.takes(self, &linear), 1);
  eng_tensor w = make(8.0);
  void* state = nullptr;
  ASSERT_EQ(t.quantize(self, &ctx, nullptr, w, &state), ENG_OK);
  EXPECT_EQ(g_states_alive, 1);
  eng_tensor x = make(3.0), y = nullptr;
  ASSERT_EQ(t.linear(self, &ctx, state, x, &y), ENG_OK);
  EXPECT_EQ(T(y)->value, 12.0);
  t.free_state(self, state);
  EXPECT_EQ(g_states_alive, 0);
  EXPECT_EQ(t.bytes_per_element(self), 0.5);
  for (eng_tensor e : {w, x, y}) mock_host()->tensor_release(e);
  EXPECT_EQ(g.live, 0);
  t.destroy(self);
}

class NoMerge : public engine::sdk::Peft {
 public:
  NoMerge(Host&, const std::string&) {}
  void attach(Host&) override {}
  Tensor linear(Host&, void*, const Tensor&, const Tensor& base) override { return base; }
  void save(Host&, const std::string&, const std::string&) override {}
  void load(Host&, const std::string& dir) override {
    throw engine::sdk::Error("no adapter in " + dir, ENG_ERR_IO);
  }
};

TEST(SdkWrappers, PeftDefaultsAndErrors) {
  const eng_peft_vtable t = engine::sdk::detail::PeftAdapter<NoMerge>::vtable();
  eng_ctx ctx = make_ctx();
  void* self = nullptr;
  ASSERT_EQ(t.create(mock_host(), &ctx, "{}", &self), ENG_OK);
  eng_tensor w = make(1.0), out = nullptr;
  EXPECT_EQ(t.merge(self, &ctx, nullptr, w, &out), ENG_ERR_UNSUPPORTED);
  EXPECT_EQ(out, nullptr);
  EXPECT_NE(g.error.find("cannot merge"), std::string::npos);
  EXPECT_EQ(t.load(self, &ctx, "/tmp/x"), ENG_ERR_IO);
  EXPECT_EQ(g.error, "no adapter in /tmp/x");
  // linear returning its input hands the engine its own (retained) reference.
  ASSERT_EQ(t.linear(self, &ctx, nullptr, w, w, &out), ENG_OK);
  EXPECT_EQ(out, w);
  EXPECT_EQ(T(w)->refs, 2);
  mock_host()->tensor_release(out);
  mock_host()->tensor_release(w);
  EXPECT_EQ(g.live, 0);
  t.destroy(self);
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

// ---- plugin-owned states and tensor files: a mock of the appended host entries ----
struct MockState {
  std::vector<std::string> keys;
};
struct FileMock {
  int live_states = 0;
  std::string written_path, written_metadata;
} fm;

eng_host_api files_host() {
  eng_host_api h = *mock_host();
  h.state_create = [](const eng_ctx*, eng_state* out) -> eng_status {
    ++fm.live_states;
    *out = reinterpret_cast<eng_state>(new MockState{{"b.weight", "a.weight"}});
    return ENG_OK;
  };
  h.state_destroy = [](eng_state st) {
    if (st == nullptr) return;
    --fm.live_states;
    delete reinterpret_cast<MockState*>(st);
  };
  h.state_size = [](eng_state st) -> int64_t {
    return static_cast<int64_t>(reinterpret_cast<MockState*>(st)->keys.size());
  };
  h.state_key_at = [](eng_state st, int64_t i) -> const char* {
    return reinterpret_cast<MockState*>(st)->keys[static_cast<size_t>(i)].c_str();
  };
  h.safetensors_write = [](const eng_ctx*, const char* path, eng_state, const char* meta) -> eng_status {
    fm.written_path = path;
    fm.written_metadata = meta != nullptr ? meta : "(null)";
    return ENG_OK;
  };
  h.safetensors_read = [](const eng_ctx*, const char* path, eng_state* out) -> eng_status {
    *out = nullptr;
    g.error = std::string("safetensors_read: ") + path + ": not a safetensors file";
    return ENG_ERR_INVALID_ARGUMENT;
  };
  return h;
}

// The ABI 1.1 elementwise ops: forwarded with their lists; lists of different lengths throw before the host is
// called; an engine whose op table ends before an entry is refused naming it.
TEST(SdkWrappers, ElementwiseMathAndForeachListsAreCheckedAgainstTheTable) {
  eng_ctx ctx = make_ctx();
  Host host(mock_host(), &ctx);
  {
    Tensor four = host.adopt(make(4.0));
    EXPECT_EQ(T(host.sqrt(four).get())->value, 2.0);
    std::vector<Tensor> dst = {host.adopt(make(1.0)), host.adopt(make(2.0))};
    std::vector<Tensor> x = {host.adopt(make(3.0)), host.adopt(make(4.0))};
    std::vector<Tensor> y = {host.adopt(make(4.0)), host.adopt(make(16.0))};
    host.foreach_addcdiv_(dst, 0.5, x, y, -1.0, 1.0, 0.0);  // dst = 0.5 dst - x / sqrt(y)
    EXPECT_EQ(T(dst[0].get())->value, 0.5 - 1.5);
    EXPECT_EQ(T(dst[1].get())->value, 1.0 - 1.0);
    y.pop_back();
    try {
      host.foreach_addcdiv_(dst, 0.5, x, y, -1.0, 1.0, 0.0);
      ADD_FAILURE() << "lists of different lengths were accepted";
    } catch (const engine::sdk::Error& e) {
      EXPECT_EQ(e.status(), ENG_ERR_INVALID_ARGUMENT);
      EXPECT_NE(std::string(e.what()).find("foreach_addcdiv_: the lists differ in length: dst has 2 tensors, x has 2, y has 1"),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(T(dst[0].get())->value, -1.0);  // unchanged by the refused call
  }
  EXPECT_EQ(g.live, 0);

  eng_op_table old_ops = *mock_host()->ops;
  old_ops.struct_size = static_cast<uint32_t>(offsetof(eng_op_table, sqrt));  // a 1.0 engine's table
  eng_host_api old = *mock_host();
  old.ops = &old_ops;
  Host old_host(&old, &ctx);
  Tensor one = old_host.adopt(make(1.0));
  try {
    old_host.sqrt(one);
    ADD_FAILURE() << "sqrt on a 1.0 op table did not throw";
  } catch (const engine::sdk::Error& e) {
    EXPECT_EQ(e.status(), ENG_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(e.what()).find("'sqrt'"), std::string::npos) << e.what();
  }
}

TEST(SdkWrappers, StatesAreDestroyedByTheirOwnerAndTensorFilesGoThroughTheHost) {
  const eng_host_api api = files_host();
  eng_ctx ctx = make_ctx();
  Host host(&api, &ctx);
  {
    engine::sdk::State st = host.state_create();
    EXPECT_EQ(fm.live_states, 1);
    EXPECT_EQ(st.size(), 2);
    EXPECT_EQ(st.keys(), (std::vector<std::string>{"b.weight", "a.weight"}));
    engine::sdk::State moved = std::move(st);
    EXPECT_FALSE(st);
    EXPECT_EQ(fm.live_states, 1);
    host.write_safetensors("/tmp/x.safetensors", moved, {{"format", "pt"}});
    EXPECT_EQ(fm.written_path, "/tmp/x.safetensors");
    EXPECT_EQ(fm.written_metadata, R"({"format":"pt"})");
    host.write_safetensors("/tmp/y.safetensors", moved);
    EXPECT_EQ(fm.written_metadata, "(null)");  // no metadata: NULL, not "{}"
  }
  EXPECT_EQ(fm.live_states, 0);
  try {
    host.read_safetensors("/tmp/bad.safetensors");
    ADD_FAILURE() << "read_safetensors did not throw";
  } catch (const engine::sdk::Error& e) {
    EXPECT_EQ(e.status(), ENG_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("/tmp/bad.safetensors"), std::string::npos) << e.what();
  }

  // A host whose table predates these entries: refused with a message, never a read past its end.
  eng_host_api old = api;
  old.struct_size = static_cast<uint32_t>(offsetof(eng_host_api, state_create));
  Host old_host(&old, &ctx);
  try {
    old_host.state_create();
    ADD_FAILURE() << "state_create on a short table did not throw";
  } catch (const engine::sdk::Error& e) {
    EXPECT_EQ(e.status(), ENG_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(e.what()).find("state_create"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fm.live_states, 0);
}

}  // namespace
