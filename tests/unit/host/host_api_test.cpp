// Tests of the host service table and op table (engine/host/host_api.cpp, op_table.cpp and the
// *_entries.cpp files) as a plugin sees them: through eng_host_api with an eng_ctx, never through engine
// headers, except to set up the HostSession.
#include "engine/host/host_api.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "engine/host/host_session.hpp"
#include "engine/host/linear_seam.hpp"
#include "engine/host/tensor_handle.hpp"
#include "engine/io/safetensors.hpp"
#include "engine/io/safetensors_writer.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::host {
namespace {

using rt::Tensor;

struct Fixture {
  HostSession session{rt::cpu_device(), 1234};
  const eng_host_api* host = host_api();
  const eng_op_table* ops = host_api()->ops;
  eng_ctx ctx = session.context();
};

eng_tensor from_floats(const Fixture& f, std::vector<int64_t> shape, const std::vector<float>& v) {
  eng_tensor t = nullptr;
  EXPECT_EQ(f.host->tensor_from_host(&f.ctx, ENG_F32, static_cast<int32_t>(shape.size()), shape.data(),
                                     v.data(), v.size() * sizeof(float), &t),
            ENG_OK);
  return t;
}

std::vector<float> to_floats(const Fixture& f, eng_tensor t) {
  int64_t n = 1;
  for (int i = 0; i < f.host->tensor_ndim(t); ++i) n *= f.host->tensor_dim(t, i);
  std::vector<float> v(static_cast<size_t>(n));
  EXPECT_EQ(f.host->tensor_to_host(&f.ctx, t, v.data(), v.size() * sizeof(float)), ENG_OK);
  return v;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

TEST(HostApi, TablesDeclareTheirSizesAndVersion) {
  const eng_host_api* h = host_api();
  EXPECT_EQ(h->struct_size, sizeof(eng_host_api));
  EXPECT_EQ(h->abi_version, ENG_ABI_VERSION);
  ASSERT_NE(h->ops, nullptr);
  EXPECT_EQ(h->ops->struct_size, sizeof(eng_op_table));
  // Every entry is implemented (no NULL slot in either table).
  const auto* hp = reinterpret_cast<const unsigned char*>(h);
  for (size_t off = offsetof(eng_host_api, log); off < sizeof(eng_host_api); off += sizeof(void*)) {
    void* fn = nullptr;
    std::memcpy(&fn, hp + off, sizeof fn);
    EXPECT_NE(fn, nullptr) << "host table slot at offset " << off;
  }
  const auto* op = reinterpret_cast<const unsigned char*>(h->ops);
  for (size_t off = offsetof(eng_op_table, embedding); off < sizeof(eng_op_table); off += sizeof(void*)) {
    void* fn = nullptr;
    std::memcpy(&fn, op + off, sizeof fn);
    EXPECT_NE(fn, nullptr) << "op table slot at offset " << off;
  }
}

TEST(HostApi, DevicePropertiesDescribeTheSessionDevice) {
  Fixture f;
  eng_device_properties p{};
  p.struct_size = sizeof(p);
  ASSERT_EQ(f.host->device_properties(&f.ctx, &p), ENG_OK);
  EXPECT_EQ(p.struct_size, sizeof(p));
  EXPECT_EQ(p.device_type, ENG_DEVICE_CPU);
  EXPECT_STREQ(p.name, "cpu");
  EXPECT_GT(p.total_memory, 0u);
  EXPECT_GE(p.sm_count, 1);  // the CPU's worker threads
  // An older, shorter struct is filled only up to its size; a size without the name is refused.
  eng_device_properties small{};
  small.struct_size = 8;
  EXPECT_NE(f.host->device_properties(&f.ctx, &small), ENG_OK);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("struct_size"), std::string::npos);
  EXPECT_NE(f.host->device_properties(&f.ctx, nullptr), ENG_OK);
}

TEST(HostApi, TensorHandlesRoundTripAndCountReferences) {
  Fixture f;
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  eng_tensor t = from_floats(f, {2, 3}, v);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(f.host->tensor_ndim(t), 2);
  EXPECT_EQ(f.host->tensor_dim(t, -1), 3);
  EXPECT_EQ(f.host->tensor_dtype(t), ENG_F32);
  EXPECT_EQ(to_floats(f, t), v);
  DLTensor dl;
  ASSERT_EQ(f.host->tensor_dlpack(t, &dl), ENG_OK);
  EXPECT_EQ(dl.ndim, 2);
  EXPECT_EQ(dl.shape[0], 2);
  EXPECT_EQ(dl.strides[0], 3);
  EXPECT_EQ(dl.dtype.code, kDLFloat);
  EXPECT_EQ(static_cast<float*>(dl.data)[4], 5.f);
  EXPECT_EQ(t->refs.load(), 1);
  f.host->tensor_retain(t);
  EXPECT_EQ(t->refs.load(), 2);
  f.host->tensor_release(t);
  EXPECT_EQ(t->refs.load(), 1);
  // A transposed view reports its strides through DLPack and copies out in logical order.
  eng_tensor tt = nullptr;
  ASSERT_EQ(f.ops->transpose(&f.ctx, t, 0, 1, &tt), ENG_OK);
  ASSERT_EQ(f.host->tensor_dlpack(tt, &dl), ENG_OK);
  EXPECT_EQ(f.host->tensor_dim(tt, 0), 3);
  EXPECT_EQ(to_floats(f, tt), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  f.host->tensor_release(tt);
  f.host->tensor_release(t);
  f.host->tensor_release(nullptr);  // accepted
  eng_tensor z = nullptr;
  const int64_t shape[1] = {4};
  ASSERT_EQ(f.host->tensor_zeros(&f.ctx, ENG_BF16, 1, shape, &z), ENG_OK);
  EXPECT_EQ(f.host->tensor_dtype(z), ENG_BF16);
  f.host->tensor_release(z);
}

TEST(HostApi, ErrorsFromFailingOpsReachGetError) {
  Fixture f;
  eng_tensor a = from_floats(f, {2, 3}, {1, 2, 3, 4, 5, 6});
  eng_tensor b = from_floats(f, {4}, {1, 2, 3, 4});
  eng_tensor out = reinterpret_cast<eng_tensor>(0x1);
  eng_status st = f.ops->add(&f.ctx, a, b, &out);
  EXPECT_NE(st, ENG_OK);
  EXPECT_EQ(out, nullptr);
  std::string msg = f.host->get_error(&f.ctx);
  EXPECT_EQ(msg.rfind("add: ", 0), 0u) << msg;
  EXPECT_GT(msg.size(), 5u);
  // A wrong byte count names both numbers.
  const int64_t shape[1] = {3};
  float data[2] = {0, 0};
  EXPECT_EQ(f.host->tensor_from_host(&f.ctx, ENG_F32, 1, shape, data, sizeof data, &out),
            ENG_ERR_INVALID_ARGUMENT);
  msg = f.host->get_error(&f.ctx);
  EXPECT_NE(msg.find("8 bytes given"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(12 bytes)"), std::string::npos) << msg;
  // NULL handles and contexts are refused, never dereferenced.
  EXPECT_EQ(f.ops->add(&f.ctx, nullptr, b, &out), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("NULL"), std::string::npos);
  EXPECT_EQ(f.ops->add(nullptr, a, b, &out), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_STREQ(f.host->get_error(nullptr), "");
  // A plugin's own message goes to the same slot.
  f.host->set_error(&f.ctx, ENG_ERR_IO, "plugin says no");
  EXPECT_STREQ(f.host->get_error(&f.ctx), "plugin says no");
  EXPECT_EQ(f.session.error_status(), ENG_ERR_IO);
  // A missing parameter through the engine-side lookup.
  EXPECT_EQ(f.host->param_find(&f.ctx, "nope"), nullptr);
  EXPECT_EQ(f.host->block_end(&f.ctx, 3), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("block_end(3) without a matching block_begin(3)"),
            std::string::npos)
      << f.host->get_error(&f.ctx);
  f.host->tensor_release(a);
  f.host->tensor_release(b);
}

TEST(HostApi, EveryOpRefusesNullArgumentsWithAMessage) {
  Fixture f;
  const eng_op_table* o = f.ops;
  eng_tensor out = nullptr;
  eng_rope_config rope{};
  rope.struct_size = sizeof rope;
  const int64_t shape[1] = {1};
  std::vector<std::pair<const char*, eng_status>> calls = {
      {"embedding", o->embedding(&f.ctx, nullptr, nullptr, &out)},
      {"linear", o->linear(&f.ctx, nullptr, nullptr, nullptr, &out)},
      {"matmul", o->matmul(&f.ctx, nullptr, nullptr, 0, 0, &out)},
      {"add", o->add(&f.ctx, nullptr, nullptr, &out)},
      {"mul", o->mul(&f.ctx, nullptr, nullptr, &out)},
      {"scale", o->scale(&f.ctx, nullptr, 2.0, &out)},
      {"rms_norm", o->rms_norm(&f.ctx, nullptr, nullptr, 1e-5, &out)},
      {"rope", o->rope(&f.ctx, nullptr, nullptr, &rope, &out)},
      {"attention", o->attention(&f.ctx, nullptr, nullptr, nullptr, nullptr, 1.0, nullptr, 0, &out)},
      {"silu", o->silu(&f.ctx, nullptr, &out)},
      {"swiglu", o->swiglu(&f.ctx, nullptr, nullptr, &out)},
      {"softmax", o->softmax(&f.ctx, nullptr, &out)},
      {"cross_entropy", o->cross_entropy(&f.ctx, nullptr, nullptr, -100, 1.0, &out)},
      {"linear_cross_entropy", o->linear_cross_entropy(&f.ctx, nullptr, nullptr, nullptr, -100, 1.0, &out)},
      {"dropout", o->dropout(&f.ctx, nullptr, 0.1, &out)},
      {"cast", o->cast(&f.ctx, nullptr, ENG_F32, &out)},
      {"reshape", o->reshape(&f.ctx, nullptr, 1, shape, &out)},
      {"transpose", o->transpose(&f.ctx, nullptr, 0, 1, &out)},
      {"slice", o->slice(&f.ctx, nullptr, 0, 0, 1, &out)},
      {"concat", o->concat(&f.ctx, 0, nullptr, 0, &out)},
      {"contiguous", o->contiguous(&f.ctx, nullptr, &out)},
      {"sum", o->sum(&f.ctx, nullptr, &out)},
      {"param", o->param(&f.ctx, nullptr, &out)},
      {"custom op", o->custom(&f.ctx, 1, nullptr, nullptr, &out)},
      {"axpby_", o->axpby_(&f.ctx, nullptr, 1.0, nullptr, 1.0)},
      {"copy_", o->copy_(&f.ctx, nullptr, nullptr)},
      {"fill_", o->fill_(&f.ctx, nullptr, 0.0)},
      {"sqrt", o->sqrt(&f.ctx, nullptr, &out)},
      {"rsqrt", o->rsqrt(&f.ctx, nullptr, &out)},
      {"div", o->div(&f.ctx, nullptr, nullptr, &out)},
      {"sign", o->sign(&f.ctx, nullptr, &out)},
      {"abs", o->abs(&f.ctx, nullptr, &out)},
      {"maximum", o->maximum(&f.ctx, nullptr, nullptr, &out)},
      {"minimum", o->minimum(&f.ctx, nullptr, nullptr, &out)},
      {"where", o->where(&f.ctx, nullptr, nullptr, nullptr, &out)},
      {"pow_scalar", o->pow_scalar(&f.ctx, nullptr, 2.0, &out)},
      {"clamp", o->clamp(&f.ctx, nullptr, 0.0, 1.0, &out)},
      {"foreach_axpby_", o->foreach_axpby_(&f.ctx, 1, nullptr, 1.0, nullptr, 1.0)},
      {"foreach_addcmul_", o->foreach_addcmul_(&f.ctx, 1, nullptr, 1.0, nullptr, nullptr, 1.0)},
      {"foreach_addcdiv_", o->foreach_addcdiv_(&f.ctx, 1, nullptr, 1.0, nullptr, nullptr, 1.0, 1.0, 0.0, 1)},
      {"foreach_add_sign_", o->foreach_add_sign_(&f.ctx, -1, nullptr, 1.0, nullptr, 1.0, nullptr, 0.0, 1.0)},
      {"param_value", f.host->param_value(&f.ctx, nullptr, &out)},
      {"param_grad", f.host->param_grad(&f.ctx, nullptr, &out)},
      {"state_get", f.host->state_get(&f.ctx, nullptr, "k", &out)},
      {"all_reduce_sum", f.host->all_reduce_sum(&f.ctx, nullptr)},
      {"tensor_to_host", f.host->tensor_to_host(&f.ctx, nullptr, nullptr, 0)},
  };
  for (const auto& [name, status] : calls) {
    EXPECT_EQ(status, ENG_ERR_INVALID_ARGUMENT) << name;
    EXPECT_EQ(out, nullptr) << name;
  }
  // Each failure left its own message (the last one here) prefixed by the entry's name.
  EXPECT_EQ(std::string(f.host->get_error(&f.ctx)).rfind("tensor_to_host: ", 0), 0u)
      << f.host->get_error(&f.ctx);
  EXPECT_EQ(f.ops->sum(nullptr, nullptr, &out), ENG_ERR_INVALID_ARGUMENT);  // no context: a status, no crash
}

// The ABI 1.1 elementwise math through the table: broadcast ops recorded with gradients, refusals naming both
// shapes, and the foreach updates (an Adam step over two tensors in three calls, against a scalar reference).
TEST(HostApi, ElementwiseMathBroadcastsRecordsAndUpdatesLists) {
  Fixture f;
  const eng_op_table* o = f.ops;
  eng_tensor a = from_floats(f, {2, 1, 3}, {1, 4, 9, 16, 25, 36});
  eng_tensor b = from_floats(f, {2, 1}, {2, 4});
  eng_tensor q = nullptr, s = nullptr, m = nullptr;
  ASSERT_EQ(o->div(&f.ctx, a, b, &q), ENG_OK) << f.host->get_error(&f.ctx);
  EXPECT_EQ(f.host->tensor_ndim(q), 3);
  EXPECT_EQ(f.host->tensor_dim(q, 1), 2);
  EXPECT_EQ(to_floats(f, q), (std::vector<float>{0.5f, 2, 4.5f, 0.25f, 1, 2.25f, 8, 12.5f, 18, 4, 6.25f, 9}));
  ASSERT_EQ(o->sqrt(&f.ctx, a, &s), ENG_OK);
  EXPECT_EQ(to_floats(f, s), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  ASSERT_EQ(o->maximum(&f.ctx, s, b, &m), ENG_OK);  // (2,1,3) with (2,1) -> (2,2,3)
  EXPECT_EQ(f.host->tensor_dim(m, 0), 2);
  eng_tensor bad = from_floats(f, {4}, {1, 2, 3, 4}), out = nullptr;
  EXPECT_EQ(o->add(&f.ctx, a, bad, &out), ENG_ERR_INVALID_ARGUMENT);
  const std::string msg = f.host->get_error(&f.ctx);
  EXPECT_NE(msg.find("(2, 1, 3)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(4,)"), std::string::npos) << msg;
  EXPECT_EQ(out, nullptr);
  for (eng_tensor t : {a, b, q, s, m, bad}) f.host->tensor_release(t);

  // Adam over two tensors: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; w = w - lr/bc1 m / (sqrt(v/bc2) + eps)
  const double b1 = 0.9, b2 = 0.999, lr = 0.1, eps = 1e-8, bc1 = 1 - b1, bc2 = 1 - b2;
  std::vector<float> w0 = random_floats(5, 1), w1 = random_floats(3, 2), g0 = random_floats(5, 3),
                     g1 = random_floats(3, 4);
  eng_tensor w[2] = {from_floats(f, {5}, w0), from_floats(f, {3}, w1)};
  eng_tensor g[2] = {from_floats(f, {5}, g0), from_floats(f, {3}, g1)};
  eng_tensor mo[2] = {from_floats(f, {5}, std::vector<float>(5, 0.f)), from_floats(f, {3}, std::vector<float>(3, 0.f))};
  eng_tensor ve[2] = {from_floats(f, {5}, std::vector<float>(5, 0.f)), from_floats(f, {3}, std::vector<float>(3, 0.f))};
  ASSERT_EQ(o->foreach_axpby_(&f.ctx, 2, mo, b1, g, 1 - b1), ENG_OK) << f.host->get_error(&f.ctx);
  ASSERT_EQ(o->foreach_addcmul_(&f.ctx, 2, ve, b2, g, g, 1 - b2), ENG_OK);
  ASSERT_EQ(o->foreach_addcdiv_(&f.ctx, 2, w, 1.0, mo, ve, -lr / bc1, 1 / bc2, eps, 1), ENG_OK);
  const std::vector<float>* ws[2] = {&w0, &w1};
  const std::vector<float>* gs[2] = {&g0, &g1};
  for (int t = 0; t < 2; ++t) {
    const std::vector<float> got = to_floats(f, w[t]);
    for (size_t i = 0; i < got.size(); ++i) {
      const double gi = (*gs[t])[i], mi = (1 - b1) * gi, vi = (1 - b2) * gi * gi;
      const double want = (*ws[t])[i] - lr / bc1 * mi / (std::sqrt(vi / bc2) + eps);  // |step| = lr
      EXPECT_NEAR(got[i], want, 1e-5) << "tensor " << t << " element " << i;
    }
  }
  // a NULL list, a negative length
  EXPECT_EQ(o->foreach_axpby_(&f.ctx, 2, w, 1.0, nullptr, 1.0), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("the list x is NULL but n = 2"), std::string::npos)
      << f.host->get_error(&f.ctx);
  EXPECT_EQ(o->foreach_axpby_(&f.ctx, -1, w, 1.0, g, 1.0), ENG_ERR_INVALID_ARGUMENT);
  // shapes differ between the lists: refused naming both, nothing updated
  const std::vector<float> before = to_floats(f, w[0]);
  eng_tensor swapped[2] = {g[1], g[0]};
  EXPECT_EQ(o->foreach_axpby_(&f.ctx, 2, w, 1.0, swapped, 1.0), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("does not have the shape of dst[0]"), std::string::npos)
      << f.host->get_error(&f.ctx);
  EXPECT_EQ(to_floats(f, w[0]), before);
  for (int t = 0; t < 2; ++t)
    for (eng_tensor x : {w[t], g[t], mo[t], ve[t]}) f.host->tensor_release(x);
}

eng_param declare(Fixture& f, const char* name, std::vector<int64_t> shape, uint32_t flags,
                  eng_param_role role, eng_init_kind init = ENG_INIT_NORMAL, double arg = 0.5,
                  eng_dtype dtype = ENG_F32) {
  eng_param_decl d{};
  d.struct_size = sizeof d;
  d.name = name;
  d.ndim = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) d.shape[i] = shape[i];
  d.dtype = dtype;
  d.role = role;
  d.flags = flags;
  d.init = init;
  d.init_arg = arg;
  eng_param p = nullptr;
  EXPECT_EQ(f.host->param_declare(&f.ctx, &d, &p), ENG_OK) << f.host->get_error(&f.ctx);
  return p;
}

TEST(HostApi, ParameterServices) {
  Fixture f;
  f.session.set_declaring(true);
  ASSERT_EQ(f.host->block_begin(&f.ctx, 1), ENG_OK);
  eng_param w = declare(f, "model.layers.1.mlp.up_proj.weight", {4, 3}, 0, ENG_ROLE_LINEAR, ENG_INIT_NORMAL,
                        0.5, ENG_BF16);
  ASSERT_EQ(f.host->block_end(&f.ctx, 1), ENG_OK);
  eng_param n = declare(f, "model.norm.weight", {3}, ENG_PARAM_TRAINABLE | ENG_PARAM_NO_DECAY, ENG_ROLE_NORM,
                        ENG_INIT_ONES);
  f.session.set_declaring(false);
  EXPECT_EQ(f.session.tape().size(), 0u);
  EXPECT_EQ(f.host->param_count(&f.ctx), 2);
  EXPECT_EQ(f.host->param_at(&f.ctx, 1), n);
  EXPECT_EQ(f.host->param_at(&f.ctx, 2), nullptr);
  EXPECT_EQ(f.host->param_find(&f.ctx, "model.norm.weight"), n);
  eng_param_info info{};
  info.struct_size = sizeof info;
  ASSERT_EQ(f.host->param_info(w, &info), ENG_OK);
  EXPECT_STREQ(info.name, "model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(info.block, 1);
  EXPECT_EQ(info.ndim, 2);
  EXPECT_EQ(info.shape[0], 4);
  EXPECT_EQ(info.role, ENG_ROLE_LINEAR);
  EXPECT_EQ(info.flags & ENG_PARAM_TRAINABLE, 0u);
  ASSERT_EQ(f.host->param_info(n, &info), ENG_OK);
  EXPECT_EQ(info.block, -1);
  // Frozen: storage dtype; trainable: fp32 master; no grad yet.
  eng_tensor v = nullptr, g = reinterpret_cast<eng_tensor>(0x1);
  ASSERT_EQ(f.host->param_value(&f.ctx, w, &v), ENG_OK);
  EXPECT_EQ(f.host->tensor_dtype(v), ENG_BF16);
  f.host->tensor_release(v);
  ASSERT_EQ(f.host->param_set_trainable(&f.ctx, w, 1), ENG_OK);
  ASSERT_EQ(f.host->param_value(&f.ctx, w, &v), ENG_OK);
  EXPECT_EQ(f.host->tensor_dtype(v), ENG_F32);
  ASSERT_EQ(f.host->param_grad(&f.ctx, w, &g), ENG_OK);
  EXPECT_EQ(g, nullptr);
  // In-place updates through the op table change the stored value (what optimizers do).
  ASSERT_EQ(f.ops->fill_(&f.ctx, v, 0.25), ENG_OK);
  eng_tensor v2 = nullptr;
  ASSERT_EQ(f.host->param_value(&f.ctx, w, &v2), ENG_OK);
  for (float x : to_floats(f, v2)) EXPECT_EQ(x, 0.25f);
  f.host->tensor_release(v);
  f.host->tensor_release(v2);
  // Adapters attach to linears only.
  int cookie = 0;
  EXPECT_EQ(f.host->peft_attach(&f.ctx, w, &cookie), ENG_OK);
  EXPECT_EQ(param_of(w).peft_cookie, &cookie);
  EXPECT_EQ(f.host->peft_attach(&f.ctx, n, &cookie), ENG_ERR_INVALID_ARGUMENT);
  // A duplicate declaration is an error with the name in it.
  eng_param_decl d{};
  d.struct_size = sizeof d;
  d.name = "model.norm.weight";
  d.ndim = 1;
  d.shape[0] = 3;
  eng_param dup = nullptr;
  EXPECT_EQ(f.host->param_declare(&f.ctx, &d, &dup), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("'model.norm.weight' is declared twice"),
            std::string::npos);
}

TEST(HostApi, StateDictionariesRngAndCollectives) {
  Fixture f;
  rt::StateDict dict;
  eng_state st = state_handle(dict);
  eng_tensor t = from_floats(f, {3}, {1, 2, 3});
  ASSERT_EQ(f.host->state_put(&f.ctx, st, "adamw.m.w", t), ENG_OK);
  eng_tensor back = nullptr;
  ASSERT_EQ(f.host->state_get(&f.ctx, st, "adamw.m.w", &back), ENG_OK);
  EXPECT_EQ(to_floats(f, back), (std::vector<float>{1, 2, 3}));
  f.host->tensor_release(back);
  EXPECT_EQ(f.host->state_get(&f.ctx, st, "adamw.v.w", &back), ENG_ERR_NOT_FOUND);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("no entry 'adamw.v.w'"), std::string::npos);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("adamw.m.w"), std::string::npos);

  // The generator is seeded by the session and its state restores exactly.
  HostSession other(rt::cpu_device(), 1234);
  eng_ctx octx = other.context();
  const uint64_t a = f.host->rng_next_u64(&f.ctx);
  EXPECT_EQ(a, f.host->rng_next_u64(&octx));
  const uint64_t saved = f.session.rng().state();
  const uint64_t b = f.host->rng_next_u64(&f.ctx);
  EXPECT_NE(a, b);
  f.session.rng().set_state(saved);
  EXPECT_EQ(f.host->rng_next_u64(&f.ctx), b);

  // world_size 1: reductions are identities, gathers copies.
  EXPECT_EQ(f.host->all_reduce_sum(&f.ctx, t), ENG_OK);
  EXPECT_EQ(to_floats(f, t), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(f.host->broadcast(&f.ctx, t, 0), ENG_OK);
  EXPECT_EQ(f.host->broadcast(&f.ctx, t, 1), ENG_ERR_INVALID_ARGUMENT);
  eng_tensor full = nullptr;
  const int64_t shape[1] = {3};
  ASSERT_EQ(f.host->tensor_zeros(&f.ctx, ENG_F32, 1, shape, &full), ENG_OK);
  EXPECT_EQ(f.host->all_gather(&f.ctx, t, full), ENG_OK);
  EXPECT_EQ(to_floats(f, full), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(f.host->reduce_scatter_sum(&f.ctx, full, t), ENG_OK);
  EXPECT_EQ(f.host->barrier(&f.ctx), ENG_OK);
  f.host->tensor_release(full);
  f.host->tensor_release(t);
}

TEST(HostApi, DeviceAllocationsGoThroughTheDeviceAllocator) {
  Fixture f;
  rt::Device& dev = rt::cpu_device();
  const int64_t before = dev.memory_stats().current_bytes;
  void* p = nullptr;
  ASSERT_EQ(f.host->device_alloc(&f.ctx, 4096, &p), ENG_OK);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(dev.memory_stats().current_bytes - before, 4096);
  std::memset(p, 1, 4096);
  f.host->device_free(&f.ctx, p);
  EXPECT_EQ(dev.memory_stats().current_bytes, before);
  int local = 0;
  f.host->device_free(&f.ctx, &local);  // not ours: refused with a message, not freed
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("was not allocated by device_alloc"),
            std::string::npos);
}

// ---- custom ops -----------------------------------------------------------------------------------------

// y = scale * x^3 (f32, any shape), computed by the "plugin" on the CPU through DLPack views.
struct CubeOp {
  const eng_host_api* host;
  int forwards = 0, backwards = 0;
};

struct CubeAttrs {
  double scale;
};

float* f32_data(const eng_host_api* host, eng_tensor t, int64_t* n) {
  DLTensor dl;
  if (host->tensor_dlpack(t, &dl) != ENG_OK) return nullptr;
  *n = 1;
  for (int i = 0; i < dl.ndim; ++i) *n *= dl.shape[i];
  return static_cast<float*>(dl.data);
}

eng_status cube_forward(void* self, const eng_ctx* ctx, const eng_tensor* in, const void* attrs,
                        eng_tensor* out) {
  auto* op = static_cast<CubeOp*>(self);
  ++op->forwards;
  const double s = static_cast<const CubeAttrs*>(attrs)->scale;
  eng_tensor x = nullptr;
  if (eng_status st = op->host->ops->contiguous(ctx, in[0], &x); st != ENG_OK) return st;
  int32_t nd = op->host->tensor_ndim(x);
  int64_t shape[ENG_MAX_DIMS];
  for (int i = 0; i < nd; ++i) shape[i] = op->host->tensor_dim(x, i);
  if (eng_status st = op->host->tensor_empty(ctx, ENG_F32, nd, shape, out); st != ENG_OK) return st;
  int64_t n = 0;
  const float* xp = f32_data(op->host, x, &n);
  float* yp = f32_data(op->host, *out, &n);
  for (int64_t i = 0; i < n; ++i) yp[i] = static_cast<float>(s * xp[i] * xp[i] * xp[i]);
  op->host->tensor_release(x);
  return ENG_OK;
}

eng_status cube_backward(void* self, const eng_ctx* ctx, const eng_tensor* in, const eng_tensor*,
                         const eng_tensor* grad_out, const void* attrs, const int32_t* needs,
                         eng_tensor* grad_in) {
  auto* op = static_cast<CubeOp*>(self);
  ++op->backwards;
  if (!needs[0]) return ENG_OK;
  const double s = static_cast<const CubeAttrs*>(attrs)->scale;
  eng_tensor x = nullptr, g = nullptr;
  op->host->ops->contiguous(ctx, in[0], &x);
  op->host->ops->contiguous(ctx, grad_out[0], &g);
  int32_t nd = op->host->tensor_ndim(x);
  int64_t shape[ENG_MAX_DIMS];
  for (int i = 0; i < nd; ++i) shape[i] = op->host->tensor_dim(x, i);
  if (eng_status st = op->host->tensor_empty(ctx, ENG_F32, nd, shape, grad_in); st != ENG_OK) return st;
  int64_t n = 0;
  const float* xp = f32_data(op->host, x, &n);
  const float* gp = f32_data(op->host, g, &n);
  float* dp = f32_data(op->host, *grad_in, &n);
  for (int64_t i = 0; i < n; ++i) dp[i] = static_cast<float>(3.0 * s * xp[i] * xp[i] * gp[i]);
  op->host->tensor_release(x);
  op->host->tensor_release(g);
  return ENG_OK;
}

eng_status failing_forward(void*, const eng_ctx* ctx, const eng_tensor*, const void*, eng_tensor*) {
  host_api()->set_error(ctx, ENG_ERR_UNSUPPORTED, "kernel not built for this device");
  return ENG_ERR_UNSUPPORTED;
}

eng_custom_op cube_def(CubeOp* self, const char* name) {
  eng_custom_op d{};
  d.struct_size = sizeof d;
  d.name = name;
  d.n_inputs = 1;
  d.n_outputs = 1;
  d.attrs_size = sizeof(CubeAttrs);
  d.self = self;
  d.forward = cube_forward;
  d.backward = cube_backward;
  return d;
}

TEST(HostApi, CustomOpRoundTripMatchesFiniteDifferences) {
  Fixture f;
  CubeOp self{f.host};
  eng_custom_op def = cube_def(&self, "test.cube");
  eng_op_id id = 0;
  ASSERT_EQ(f.host->op_register(&f.ctx, &def, &id), ENG_OK);
  eng_op_id dup = 0;
  EXPECT_EQ(f.host->op_register(&f.ctx, &def, &dup), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("'test.cube' is already registered"),
            std::string::npos);

  eng_param p = declare(f, "x", {6}, ENG_PARAM_TRAINABLE, ENG_ROLE_OTHER, ENG_INIT_UNIFORM, 1.0);
  const CubeAttrs attrs{0.5};
  const std::vector<float> w = random_floats(6, 5);  // loss = sum(w * y): the seed gradient is w
  eng_tensor x = nullptr, y = nullptr;
  ASSERT_EQ(f.ops->param(&f.ctx, p, &x), ENG_OK);
  ASSERT_EQ(f.ops->custom(&f.ctx, id, &x, &attrs, &y), ENG_OK) << f.host->get_error(&f.ctx);
  EXPECT_EQ(f.session.tape().size(), 1u);
  f.session.tape().backward(y->tensor, Tensor::from_vector(rt::Dims{6}, ENG_F32, rt::cpu_device(), w));
  EXPECT_EQ(self.backwards, 1);
  eng_tensor g = nullptr;
  ASSERT_EQ(f.host->param_grad(&f.ctx, p, &g), ENG_OK);
  ASSERT_NE(g, nullptr);
  const std::vector<float> grad = to_floats(f, g), x0 = to_floats(f, x);

  // Central differences of sum(w * y(x)) with the op run without recording.
  eng_ctx nograd = f.session.context(false);
  auto loss_at = [&](const std::vector<float>& xv) {
    eng_tensor xt = from_floats(f, {6}, xv), yt = nullptr;
    EXPECT_EQ(f.ops->custom(&nograd, id, &xt, &attrs, &yt), ENG_OK);
    std::vector<float> yv = to_floats(f, yt);
    f.host->tensor_release(xt);
    f.host->tensor_release(yt);
    double s = 0;
    for (size_t i = 0; i < yv.size(); ++i) s += static_cast<double>(w[i]) * yv[i];
    return s;
  };
  const float h = 1e-2f;
  for (size_t i = 0; i < 6; ++i) {
    std::vector<float> a = x0, b = x0;
    a[i] += h;
    b[i] -= h;
    const double fd = (loss_at(a) - loss_at(b)) / (2.0 * h);
    EXPECT_NEAR(grad[i], fd, 2e-3) << i;
    EXPECT_NEAR(grad[i], 3.0 * 0.5 * x0[i] * x0[i] * w[i], 1e-5) << i;
  }
  EXPECT_EQ(f.session.tape().size(), 0u);  // the no-grad calls recorded nothing
  for (eng_tensor t : {x, y, g}) f.host->tensor_release(t);

  // A failing plugin kernel: the status and the plugin's message reach the caller.
  eng_custom_op bad = cube_def(&self, "test.broken");
  bad.forward = failing_forward;
  eng_op_id bad_id = 0;
  ASSERT_EQ(f.host->op_register(&f.ctx, &bad, &bad_id), ENG_OK);
  eng_tensor xin = from_floats(f, {2}, {1, 2}), yout = nullptr;
  EXPECT_EQ(f.ops->custom(&f.ctx, bad_id, &xin, &attrs, &yout), ENG_ERR_UNSUPPORTED);
  EXPECT_EQ(yout, nullptr);
  EXPECT_NE(
      std::string(f.host->get_error(&f.ctx)).find("custom op 'test.broken' forward failed: kernel not built"),
      std::string::npos)
      << f.host->get_error(&f.ctx);
  EXPECT_EQ(f.ops->custom(&f.ctx, 99, &xin, &attrs, &yout), ENG_ERR_INVALID_ARGUMENT);
  f.host->tensor_release(xin);
}

TEST(HostApi, CustomOpIsReplayedUnderCheckpointingWithIdenticalGradients) {
  std::vector<float> grads[2];
  int forwards[2] = {0, 0};
  for (int ckpt = 0; ckpt < 2; ++ckpt) {
    Fixture f;
    f.session.tape().set_checkpointing(ckpt == 1);
    CubeOp self{f.host};
    eng_custom_op def = cube_def(&self, "test.cube");
    eng_op_id id = 0;
    ASSERT_EQ(f.host->op_register(&f.ctx, &def, &id), ENG_OK);
    eng_param p = declare(f, "x", {5}, ENG_PARAM_TRAINABLE, ENG_ROLE_OTHER, ENG_INIT_UNIFORM, 1.0);
    const CubeAttrs attrs{2.0};
    eng_tensor x = nullptr, y1 = nullptr, y2 = nullptr;
    ASSERT_EQ(f.host->block_begin(&f.ctx, 0), ENG_OK);
    ASSERT_EQ(f.ops->param(&f.ctx, p, &x), ENG_OK);
    ASSERT_EQ(f.ops->custom(&f.ctx, id, &x, &attrs, &y1), ENG_OK);
    ASSERT_EQ(f.ops->custom(&f.ctx, id, &y1, &attrs, &y2), ENG_OK);  // 2 (2 x^3)^3
    ASSERT_EQ(f.host->block_end(&f.ctx, 0), ENG_OK);
    f.session.tape().backward(y2->tensor, Tensor::full(rt::Dims{5}, ENG_F32, rt::cpu_device(), 1.0));
    grads[ckpt] = f.session.params().grad(param_of(p)).to_float_vector();
    forwards[ckpt] = self.forwards;
    for (eng_tensor t : {x, y1, y2}) f.host->tensor_release(t);
  }
  EXPECT_EQ(forwards[0], 2);
  EXPECT_EQ(forwards[1], 4);  // replayed in backward
  ASSERT_EQ(grads[0].size(), 5u);
  EXPECT_EQ(std::memcmp(grads[0].data(), grads[1].data(), 5 * sizeof(float)), 0);
}

// y = 3 x: a backward (dx = 3 dy) that reads neither x nor y, like nf4's dequantizing matmul.
struct TripleOp {
  const eng_host_api* host;
  int backwards = 0;
  bool saw_inputs = false, saw_outputs = false;
};

eng_status triple_forward(void* self, const eng_ctx* ctx, const eng_tensor* in, const void*, eng_tensor* out) {
  return static_cast<TripleOp*>(self)->host->ops->scale(ctx, in[0], 3.0, out);
}

eng_status triple_backward(void* self, const eng_ctx* ctx, const eng_tensor* in, const eng_tensor* out,
                           const eng_tensor* grad_out, const void*, const int32_t* needs, eng_tensor* grad_in) {
  auto* op = static_cast<TripleOp*>(self);
  ++op->backwards;
  op->saw_inputs = in[0] != nullptr;
  op->saw_outputs = out[0] != nullptr;
  return needs[0] ? op->host->ops->scale(ctx, grad_out[0], 3.0, grad_in) : ENG_OK;
}

eng_custom_op triple_def(TripleOp* self, uint32_t flags) {
  eng_custom_op d{};
  d.struct_size = sizeof d;
  d.name = "test.triple";
  d.n_inputs = 1;
  d.n_outputs = 1;
  d.self = self;
  d.forward = triple_forward;
  d.backward = triple_backward;
  d.flags = flags;
  return d;
}

// ENG_CUSTOM_OP_BACKWARD_NO_INPUTS / _NO_OUTPUTS: the recorded op keeps neither value (their memory goes when
// the caller lets go, not at backward), backward gets NULL for both, also in a checkpoint replay, and the
// gradients are the same bits as without the flags. Unknown bits are refused; a struct from before `flags`
// existed (struct_size 56) registers with none, whatever follows it in memory.
TEST(HostApi, CustomOpFlagsKeepNoValuesForBackward) {
  const uint32_t both = ENG_CUSTOM_OP_BACKWARD_NO_INPUTS | ENG_CUSTOM_OP_BACKWARD_NO_OUTPUTS;
  for (int ckpt = 0; ckpt < 2; ++ckpt) {
    std::vector<float> grads[2];
    for (int flagged = 0; flagged < 2; ++flagged) {
      Fixture f;
      f.session.tape().set_checkpointing(ckpt == 1);
      TripleOp self{f.host};
      eng_custom_op def = triple_def(&self, flagged ? both : 0u);
      eng_op_id id = 0;
      ASSERT_EQ(f.host->op_register(&f.ctx, &def, &id), ENG_OK) << f.host->get_error(&f.ctx);
      eng_param p = declare(f, "x", {4096}, ENG_PARAM_TRAINABLE, ENG_ROLE_OTHER, ENG_INIT_UNIFORM, 1.0);
      OwnedHandle x, sq, y, loss;
      ASSERT_EQ(f.host->block_begin(&f.ctx, 0), ENG_OK);
      ASSERT_EQ(f.ops->param(&f.ctx, p, x.out()), ENG_OK);
      ASSERT_EQ(f.ops->mul(&f.ctx, x.get(), x.get(), sq.out()), ENG_OK);  // mul keeps x, not sq
      eng_tensor in = sq.get();
      ASSERT_EQ(f.ops->custom(&f.ctx, id, &in, nullptr, y.out()), ENG_OK) << f.host->get_error(&f.ctx);
      ASSERT_EQ(f.host->block_end(&f.ctx, 0), ENG_OK);
      ASSERT_EQ(f.ops->sum(&f.ctx, y.get(), loss.out()), ENG_OK);  // sum keeps only y's shape
      std::weak_ptr<rt::Storage> sq_memory = sq.get()->tensor.impl()->storage;
      std::weak_ptr<rt::Storage> y_memory = y.get()->tensor.impl()->storage;
      sq = OwnedHandle();
      y = OwnedHandle();
      // A checkpointed forward keeps nothing either way; otherwise only the flags let the values go.
      const bool gone = ckpt == 1 || flagged == 1;
      EXPECT_EQ(sq_memory.expired(), gone) << "checkpointing " << ckpt << ", flags " << flagged;
      EXPECT_EQ(y_memory.expired(), gone) << "checkpointing " << ckpt << ", flags " << flagged;
      f.session.tape().backward(loss.get()->tensor);
      EXPECT_EQ(self.backwards, 1);
      EXPECT_EQ(self.saw_inputs, flagged == 0);
      EXPECT_EQ(self.saw_outputs, flagged == 0);
      grads[flagged] = f.session.params().grad(param_of(p)).to_float_vector();
    }
    ASSERT_EQ(grads[0].size(), 4096u);
    EXPECT_EQ(std::memcmp(grads[0].data(), grads[1].data(), 4096 * sizeof(float)), 0) << "checkpointing " << ckpt;
  }

  Fixture f;
  TripleOp self{f.host};
  eng_custom_op def = triple_def(&self, 8u);
  eng_op_id id = 0;
  EXPECT_EQ(f.host->op_register(&f.ctx, &def, &id), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("unknown flags 0x8"), std::string::npos)
      << f.host->get_error(&f.ctx);
  def = triple_def(&self, both);
  def.struct_size = offsetof(eng_custom_op, flags);  // built before flags: they are not read
  ASSERT_EQ(f.host->op_register(&f.ctx, &def, &id), ENG_OK) << f.host->get_error(&f.ctx);
  eng_param p = declare(f, "x", {2}, ENG_PARAM_TRAINABLE, ENG_ROLE_OTHER, ENG_INIT_UNIFORM, 1.0);
  OwnedHandle x, y;
  ASSERT_EQ(f.ops->param(&f.ctx, p, x.out()), ENG_OK);
  eng_tensor in = x.get();
  ASSERT_EQ(f.ops->custom(&f.ctx, id, &in, nullptr, y.out()), ENG_OK);
  f.session.tape().backward(y.get()->tensor, Tensor::full(rt::Dims{2}, ENG_F32, rt::cpu_device(), 1.0));
  EXPECT_TRUE(self.saw_inputs);
  EXPECT_TRUE(self.saw_outputs);
}

TEST(HostApi, DropoutReplaysTheSameMaskUnderCheckpointing) {
  std::vector<float> grads[2];
  for (int ckpt = 0; ckpt < 2; ++ckpt) {
    Fixture f;  // same seed: the same dropout seed is drawn
    f.session.tape().set_checkpointing(ckpt == 1);
    eng_param p = declare(f, "x", {256}, ENG_PARAM_TRAINABLE, ENG_ROLE_OTHER, ENG_INIT_UNIFORM, 1.0);
    OwnedHandle x, d, sq, loss;
    ASSERT_EQ(f.host->block_begin(&f.ctx, 0), ENG_OK);
    ASSERT_EQ(f.ops->param(&f.ctx, p, x.out()), ENG_OK);
    ASSERT_EQ(f.ops->dropout(&f.ctx, x.get(), 0.5, d.out()), ENG_OK) << f.host->get_error(&f.ctx);
    ASSERT_EQ(f.ops->mul(&f.ctx, d.get(), x.get(), sq.out()), ENG_OK);
    ASSERT_EQ(f.host->block_end(&f.ctx, 0), ENG_OK);
    ASSERT_EQ(f.ops->sum(&f.ctx, sq.get(), loss.out()), ENG_OK);
    f.session.tape().backward(loss.get()->tensor);
    grads[ckpt] = f.session.params().grad(param_of(p)).to_float_vector();
  }
  // d(sum(mask/(1-p) * x * x))/dx = 4 x on kept elements, 0 on dropped ones; a different mask on replay
  // would change which elements are zero.
  int zeros = 0;
  for (float g : grads[0]) zeros += g == 0.f;
  EXPECT_GT(zeros, 64);
  EXPECT_LT(zeros, 192);
  EXPECT_EQ(std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)), 0);
}

// ---- the linear seam ------------------------------------------------------------------------------------

// Holds W densely in its state; linear = x W^T through a matmul node.
class DenseQuantizer final : public rt::Quantizer {
 public:
  HostSession* s_ = nullptr;  // set once the session exists (the quantizer must outlive it)
  int linears = 0;
  std::string name() const override { return "dense-test"; }
  bool takes(const rt::Param& p) override { return p.decl.role == ENG_ROLE_LINEAR; }
  void* quantize(rt::Param&, const Tensor& value) override { return new Tensor(value.to(ENG_F32)); }
  Tensor linear(void* state, const Tensor& x) override {
    ++linears;
    return s_->apply1(s_->tape().grad_enabled(), rt::ops::make_matmul(false, true),
                      {x, *static_cast<Tensor*>(state)});
  }
  Tensor dequantize(void* state, rt::DType dtype) override { return static_cast<Tensor*>(state)->to(dtype); }
  void free_state(void* state) noexcept override { delete static_cast<Tensor*>(state); }
};

// out = base + x B^T with B the adapter parameter named by the cookie.
class AddAdapterPeft final : public rt::Peft {
 public:
  explicit AddAdapterPeft(HostSession& s) : s_(s) {}
  std::string name() const override { return "add-test"; }
  Tensor linear(void* cookie, const Tensor& x, const Tensor& base_out) override {
    rt::Param& b = *static_cast<rt::Param*>(cookie);
    const bool g = s_.tape().grad_enabled();
    Tensor delta = s_.apply1(g, rt::ops::make_matmul(false, true), {x, s_.params().use(b, s_.tape())});
    return s_.apply1(g, rt::ops::make_add(), {base_out, delta});
  }

 private:
  HostSession& s_;
};

TEST(HostApi, LinearSeamResolvesDenseQuantizedAndAdapterWeights) {
  DenseQuantizer q;  // declared before the session: the parameter store frees its states through it
  Fixture f;
  q.s_ = &f.session;
  eng_param w = declare(f, "w", {3, 4}, 0, ENG_ROLE_LINEAR);
  eng_param bias = declare(f, "b", {3}, ENG_PARAM_TRAINABLE, ENG_ROLE_BIAS);
  eng_param adapter = declare(f, "w.adapter", {3, 4}, ENG_PARAM_TRAINABLE, ENG_ROLE_ADAPTER);
  rt::ParamStore& store = f.session.params();
  const std::vector<float> xv = random_floats(8, 9);
  const auto W = store.value(param_of(w)).to_double_vector(),
             Bv = store.value(param_of(bias)).to_double_vector(),
             A = store.value(param_of(adapter)).to_double_vector();
  auto expect_out = [&](eng_tensor y, bool with_adapter) {
    auto yv = to_floats(f, y);
    ASSERT_EQ(yv.size(), 6u);
    for (int r = 0; r < 2; ++r)
      for (int o = 0; o < 3; ++o) {
        double want = Bv[static_cast<size_t>(o)];
        for (int i = 0; i < 4; ++i) {
          const double wi =
              W[static_cast<size_t>(o * 4 + i)] + (with_adapter ? A[static_cast<size_t>(o * 4 + i)] : 0);
          want += xv[static_cast<size_t>(r * 4 + i)] * wi;
        }
        EXPECT_NEAR(yv[static_cast<size_t>(r * 3 + o)], want, 1e-5) << r << "," << o;
      }
  };
  eng_tensor x = from_floats(f, {2, 4}, xv), y = nullptr;
  // Dense, frozen weight: only the bias gets a gradient.
  ASSERT_EQ(f.ops->linear(&f.ctx, x, w, bias, &y), ENG_OK) << f.host->get_error(&f.ctx);
  expect_out(y, false);
  f.session.tape().backward(y->tensor, Tensor::full(rt::Dims{2, 3}, ENG_F32, rt::cpu_device(), 1.0));
  EXPECT_FALSE(store.grad(param_of(w)).defined());
  EXPECT_EQ(store.grad(param_of(bias)).to_double_vector(), (std::vector<double>{2, 2, 2}));
  f.host->tensor_release(y);

  // Quantized base + adapter: the quantizer multiplies, the adapter adds, its parameter gets x^T-shaped
  // grads.
  AddAdapterPeft peft(f.session);
  store.assign_quantizer(q);
  f.session.set_quantizer(&q);
  f.session.set_peft(&peft);
  ASSERT_EQ(f.host->peft_attach(&f.ctx, w, &param_of(adapter)), ENG_OK);
  store.zero_grads();
  ASSERT_EQ(f.ops->linear(&f.ctx, x, w, bias, &y), ENG_OK) << f.host->get_error(&f.ctx);
  EXPECT_EQ(q.linears, 1);
  expect_out(y, true);
  f.session.tape().backward(y->tensor, Tensor::full(rt::Dims{2, 3}, ENG_F32, rt::cpu_device(), 1.0));
  auto ga = store.grad(param_of(adapter)).to_double_vector();
  for (int o = 0; o < 3; ++o)
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(ga[static_cast<size_t>(o * 4 + i)],
                  xv[static_cast<size_t>(i)] + xv[static_cast<size_t>(4 + i)], 1e-6);
  EXPECT_EQ(store.grad(param_of(bias)).to_double_vector(),
            (std::vector<double>{2, 2, 2}));  // zeroed, then 2 again
  f.host->tensor_release(y);
  // Without grad nothing is recorded.
  eng_ctx nograd = f.session.context(false);
  ASSERT_EQ(f.ops->linear(&nograd, x, w, bias, &y), ENG_OK);
  EXPECT_EQ(f.session.tape().size(), 0u);
  f.host->tensor_release(y);
  f.host->tensor_release(x);
  f.session.set_peft(nullptr);
  f.session.set_quantizer(nullptr);
}

// ---- plugin-owned state dictionaries and tensor files ---------------------------------------------------

// A fresh directory under the system temp dir, removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() /
             ("engine_host_api_test_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<std::byte> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  std::memcpy(b.data(), c.data(), c.size());
  return b;
}

TEST(HostApi, PluginStatesListSortedKeysAndAreDestroyedByTheirCreator) {
  Fixture f;
  eng_state st = nullptr;
  ASSERT_EQ(f.host->state_create(&f.ctx, &st), ENG_OK);
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(f.host->state_size(st), 0);
  EXPECT_EQ(f.host->state_key_at(st, 0), nullptr);
  eng_tensor t = from_floats(f, {2}, {1, 2});
  for (const char* k : {"m.w", "a.b", "z"}) ASSERT_EQ(f.host->state_put(&f.ctx, st, k, t), ENG_OK);
  ASSERT_EQ(f.host->state_size(st), 3);
  EXPECT_STREQ(f.host->state_key_at(st, 0), "a.b");
  EXPECT_STREQ(f.host->state_key_at(st, 1), "m.w");
  EXPECT_STREQ(f.host->state_key_at(st, 2), "z");
  EXPECT_EQ(f.host->state_key_at(st, 3), nullptr);
  EXPECT_EQ(f.host->state_key_at(st, -1), nullptr);
  // Adding a key rebuilds the order: "b" lands between "a.b" and "m.w".
  ASSERT_EQ(f.host->state_put(&f.ctx, st, "b", t), ENG_OK);
  EXPECT_STREQ(f.host->state_key_at(st, 1), "b");
  EXPECT_STREQ(f.host->state_key_at(st, 3), "z");
  f.host->tensor_release(t);  // the state keeps its own references
  eng_tensor back = nullptr;
  ASSERT_EQ(f.host->state_get(&f.ctx, st, "z", &back), ENG_OK);
  EXPECT_EQ(to_floats(f, back), (std::vector<float>{1, 2}));
  f.host->tensor_release(back);
  f.host->state_destroy(st);
  f.host->state_destroy(nullptr);  // accepted
  EXPECT_EQ(f.host->state_size(nullptr), -1);
  EXPECT_EQ(f.host->state_key_at(nullptr, 0), nullptr);

  // A state the engine passed in is not the plugin's to free: state_destroy leaves it intact.
  rt::StateDict engine_owned;
  engine_owned.put("k", Tensor::zeros({1}, ENG_F32, rt::cpu_device()));
  f.host->state_destroy(state_handle(engine_owned));
  EXPECT_EQ(engine_owned.size(), 1u);
  EXPECT_EQ(f.host->state_size(state_handle(engine_owned)), 1);

  EXPECT_EQ(f.host->state_create(&f.ctx, nullptr), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("state_create"), std::string::npos);
}

TEST(HostApi, SafetensorsWriteThenReadRoundTripsValuesDtypesAndMetadata) {
  Fixture f;
  TempDir dir("roundtrip");
  const std::string path = dir.file("t.safetensors");
  eng_state st = nullptr;
  ASSERT_EQ(f.host->state_create(&f.ctx, &st), ENG_OK);

  const std::vector<float> w = {0.5f, -1.25f, 3.f, 1e-8f, -0.f, 7.75f};  // (2, 3) f32
  eng_tensor tw = from_floats(f, {2, 3}, w);
  const std::vector<uint16_t> h = {0x3F80, 0xC000, 0x0001, 0x7F7F};  // (4) bf16 bit patterns
  const int64_t sh[1] = {4};
  eng_tensor th = nullptr;
  ASSERT_EQ(f.host->tensor_from_host(&f.ctx, ENG_BF16, 1, sh, h.data(), 8, &th), ENG_OK);
  const int64_t step = -42;  // 0-d i64
  eng_tensor ts = nullptr;
  ASSERT_EQ(f.host->tensor_from_host(&f.ctx, ENG_I64, 0, nullptr, &step, 8, &ts), ENG_OK);
  // A non-contiguous view is written as its logical (row-major) values.
  eng_tensor twt = nullptr;
  ASSERT_EQ(f.ops->transpose(&f.ctx, tw, 0, 1, &twt), ENG_OK);  // (3, 2)
  ASSERT_EQ(f.host->state_put(&f.ctx, st, "w", tw), ENG_OK);
  ASSERT_EQ(f.host->state_put(&f.ctx, st, "h", th), ENG_OK);
  ASSERT_EQ(f.host->state_put(&f.ctx, st, "step", ts), ENG_OK);
  ASSERT_EQ(f.host->state_put(&f.ctx, st, "w_t", twt), ENG_OK);
  ASSERT_EQ(f.host->safetensors_write(&f.ctx, path.c_str(), st, R"({"format": "pt", "note": "é"})"), ENG_OK)
      << f.host->get_error(&f.ctx);

  // The bytes are the engine writer's for the same tensors (the writer is checked against Python's
  // safetensors in tests/unit/io).
  io::SafetensorsWriter ref;
  ref.add("w", ENG_F32, {2, 3}, std::as_bytes(std::span(w)));
  ref.add("h", ENG_BF16, {4}, std::as_bytes(std::span(h)));
  ref.add("step", ENG_I64, {}, std::as_bytes(std::span(&step, 1)));
  const std::vector<float> wt = {w[0], w[3], w[1], w[4], w[2], w[5]};
  ref.add("w_t", ENG_F32, {3, 2}, std::as_bytes(std::span(wt)));
  ref.set_metadata("format", "pt");
  ref.set_metadata("note", "é");
  EXPECT_EQ(file_bytes(path), ref.serialize());
  io::SafetensorsFile file = io::SafetensorsFile::open(path);
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "é"}}));

  eng_state in = nullptr;
  ASSERT_EQ(f.host->safetensors_read(&f.ctx, path.c_str(), &in), ENG_OK) << f.host->get_error(&f.ctx);
  ASSERT_EQ(f.host->state_size(in), 4);
  EXPECT_STREQ(f.host->state_key_at(in, 0), "h");
  EXPECT_STREQ(f.host->state_key_at(in, 3), "w_t");
  eng_tensor r = nullptr;
  ASSERT_EQ(f.host->state_get(&f.ctx, in, "w", &r), ENG_OK);
  EXPECT_EQ(f.host->tensor_dtype(r), ENG_F32);
  EXPECT_EQ(f.host->tensor_ndim(r), 2);
  EXPECT_EQ(f.host->tensor_dim(r, 1), 3);
  EXPECT_EQ(to_floats(f, r), w);
  f.host->tensor_release(r);
  ASSERT_EQ(f.host->state_get(&f.ctx, in, "w_t", &r), ENG_OK);
  EXPECT_EQ(to_floats(f, r), wt);
  f.host->tensor_release(r);
  ASSERT_EQ(f.host->state_get(&f.ctx, in, "h", &r), ENG_OK);
  EXPECT_EQ(f.host->tensor_dtype(r), ENG_BF16);  // the stored dtype, not converted
  std::vector<uint16_t> hb(4);
  ASSERT_EQ(f.host->tensor_to_host(&f.ctx, r, hb.data(), 8), ENG_OK);
  EXPECT_EQ(hb, h);
  f.host->tensor_release(r);
  ASSERT_EQ(f.host->state_get(&f.ctx, in, "step", &r), ENG_OK);
  EXPECT_EQ(f.host->tensor_dtype(r), ENG_I64);
  EXPECT_EQ(f.host->tensor_ndim(r), 0);
  int64_t step_back = 0;
  ASSERT_EQ(f.host->tensor_to_host(&f.ctx, r, &step_back, 8), ENG_OK);
  EXPECT_EQ(step_back, step);
  f.host->tensor_release(r);

  // NULL metadata: no "__metadata__" at all.
  const std::string bare = dir.file("bare.safetensors");
  ASSERT_EQ(f.host->safetensors_write(&f.ctx, bare.c_str(), in, nullptr), ENG_OK);
  EXPECT_TRUE(io::SafetensorsFile::open(bare).metadata().empty());

  for (eng_tensor x : {tw, th, ts, twt}) f.host->tensor_release(x);
  f.host->state_destroy(in);
  f.host->state_destroy(st);
}

TEST(HostApi, SafetensorsReadOfABadFileGivesAStatusAndNamesTheFile) {
  Fixture f;
  TempDir dir("corrupt");
  eng_state out = reinterpret_cast<eng_state>(&f);  // must be reset to NULL on failure

  const std::string garbage = dir.file("garbage.safetensors");
  std::ofstream(garbage, std::ios::binary) << "this is not a safetensors file at all";
  eng_status s = f.host->safetensors_read(&f.ctx, garbage.c_str(), &out);
  EXPECT_EQ(s, ENG_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(out, nullptr);
  std::string msg = f.host->get_error(&f.ctx);
  EXPECT_NE(msg.find("safetensors_read"), std::string::npos) << msg;
  EXPECT_NE(msg.find(garbage), std::string::npos) << msg;

  // A valid file cut short: the tensor data no longer fits.
  io::SafetensorsWriter w;
  const std::vector<float> v(16, 1.f);
  w.add("layer.weight", ENG_F32, {4, 4}, std::as_bytes(std::span(v)));
  std::vector<std::byte> bytes = w.serialize();
  bytes.resize(bytes.size() - 5);
  const std::string cut = dir.file("cut.safetensors");
  std::ofstream(cut, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  EXPECT_NE(f.host->safetensors_read(&f.ctx, cut.c_str(), &out), ENG_OK);
  msg = f.host->get_error(&f.ctx);
  EXPECT_NE(msg.find(cut), std::string::npos) << msg;

  // A missing file is an IO error naming it.
  const std::string missing = dir.file("missing.safetensors");
  EXPECT_EQ(f.host->safetensors_read(&f.ctx, missing.c_str(), &out), ENG_ERR_IO);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find(missing), std::string::npos);

  // A valid file with a dtype the engine has no tensor type for names the file and the tensor.
  io::SafetensorsWriter u;
  const std::vector<uint16_t> u16 = {1, 2};
  u.add("codes.u16", io::SafetensorsDtype::U16, {2}, std::as_bytes(std::span(u16)));
  const std::string odd = dir.file("u16.safetensors");
  u.write(odd);
  EXPECT_EQ(f.host->safetensors_read(&f.ctx, odd.c_str(), &out), ENG_ERR_UNSUPPORTED);
  msg = f.host->get_error(&f.ctx);
  EXPECT_NE(msg.find(odd), std::string::npos) << msg;
  EXPECT_NE(msg.find("codes.u16"), std::string::npos) << msg;
  EXPECT_NE(msg.find("U16"), std::string::npos) << msg;
  EXPECT_EQ(out, nullptr);
}

TEST(HostApi, SafetensorsRefusesNullPathsAndBadMetadataWithAMessage) {
  Fixture f;
  TempDir dir("null_path");
  eng_state out = nullptr;
  EXPECT_EQ(f.host->safetensors_read(&f.ctx, nullptr, &out), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("path is NULL"), std::string::npos)
      << f.host->get_error(&f.ctx);
  EXPECT_EQ(out, nullptr);

  eng_state st = nullptr;
  ASSERT_EQ(f.host->state_create(&f.ctx, &st), ENG_OK);
  f.host->set_error(&f.ctx, ENG_OK, "");
  EXPECT_EQ(f.host->safetensors_write(&f.ctx, nullptr, st, nullptr), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("safetensors_write: the path is NULL"),
            std::string::npos)
      << f.host->get_error(&f.ctx);
  const std::string path = dir.file("x.safetensors");
  EXPECT_EQ(f.host->safetensors_write(&f.ctx, path.c_str(), nullptr, nullptr), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("state dictionary handle is NULL"),
            std::string::npos);
  EXPECT_EQ(f.host->safetensors_write(&f.ctx, path.c_str(), st, R"({"format": 1})"),
            ENG_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(f.host->get_error(&f.ctx)).find("metadata entry 'format'"), std::string::npos)
      << f.host->get_error(&f.ctx);
  EXPECT_EQ(f.host->safetensors_write(&f.ctx, path.c_str(), st, "[1, 2]"), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(f.host->safetensors_write(&f.ctx, path.c_str(), st, "{not json"), ENG_ERR_INVALID_ARGUMENT);
  EXPECT_FALSE(std::filesystem::exists(path));  // nothing is written when the request is refused
  // An empty state writes a valid (empty) file.
  ASSERT_EQ(f.host->safetensors_write(&f.ctx, path.c_str(), st, nullptr), ENG_OK);
  EXPECT_EQ(io::SafetensorsFile::open(path).size(), 0u);
  f.host->state_destroy(st);
}

}  // namespace
}  // namespace engine::host
