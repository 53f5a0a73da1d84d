// Tests of the parameter store (engine/runtime/param_store.cpp).
#include "engine/runtime/param_store.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/core/error.hpp"
#include "engine/runtime/param_load.hpp"
#include "tests/unit/runtime/test_nodes.hpp"

namespace engine::rt {
namespace {

ParamDecl decl(const std::string& name, Dims shape, uint32_t flags = ENG_PARAM_TRAINABLE,
               DType dtype = ENG_F32, eng_init_kind init = ENG_INIT_NORMAL, double arg = 0.02) {
  ParamDecl d;
  d.name = name;
  d.shape = shape;
  d.flags = flags;
  d.dtype = dtype;
  d.init = init;
  d.init_arg = arg;
  return d;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ParamStore, DeclareFindAndHelpfulLookupErrors) {
  ParamStore store(cpu_device(), 1);
  Param& q = store.declare(decl("model.layers.0.self_attn.q_proj.weight", {8, 4}), 0);
  store.declare(decl("model.norm.weight", {4}));
  EXPECT_EQ(store.size(), 2u);
  EXPECT_EQ(store.find("model.layers.0.self_attn.q_proj.weight"), &q);
  EXPECT_EQ(q.block, 0);
  EXPECT_EQ(store.find("nope"), nullptr);
  std::string msg = error_of([&] { store.get("model.layers.0.self_attn.q_prj.weight"); });
  EXPECT_NE(msg.find("closest: model.layers.0.self_attn.q_proj.weight"), std::string::npos) << msg;
  msg = error_of([&] { store.declare(decl("model.norm.weight", {4})); });
  EXPECT_NE(msg.find("declared twice"), std::string::npos) << msg;
  msg = error_of([&] { store.declare(decl("bad", {4, 0})); });
  EXPECT_NE(msg.find("non-positive"), std::string::npos) << msg;
}

TEST(ParamStore, TrainableKeepsAnFp32MasterAndFrozenKeepsStorageDtype) {
  ParamStore store(cpu_device(), 1);
  Param& t = store.declare(decl("t", {4, 4}, ENG_PARAM_TRAINABLE, ENG_BF16));
  Param& f = store.declare(decl("f", {4, 4}, 0, ENG_BF16));
  EXPECT_EQ(store.value(t).dtype(), ENG_F32);
  EXPECT_EQ(store.value(f).dtype(), ENG_BF16);
  auto before = store.value(f).to_double_vector();
  store.set_trainable(f, true);
  EXPECT_EQ(store.value(f).dtype(), ENG_F32);
  EXPECT_EQ(store.value(f).to_double_vector(), before);  // bf16 -> f32 is exact
  store.set_trainable(t, false);
  EXPECT_EQ(store.value(t).dtype(), ENG_BF16);
  EXPECT_EQ(store.numel(true), 16);
}

TEST(ParamStore, InitIsSeededAndIndependentOfDeclarationOrder) {
  ParamStore a(cpu_device(), 42), b(cpu_device(), 42), c(cpu_device(), 43);
  a.declare(decl("x", {16}));
  a.declare(decl("y", {16}));
  b.declare(decl("y", {16}));
  b.declare(decl("x", {16}));
  c.declare(decl("x", {16}));
  auto ax = a.value(a.get("x")).to_double_vector();
  EXPECT_EQ(ax, b.value(b.get("x")).to_double_vector());
  EXPECT_NE(ax, c.value(c.get("x")).to_double_vector());
  EXPECT_NE(ax, a.value(a.get("y")).to_double_vector());
}

TEST(ParamStore, InitKindsFollowTheirDistributions) {
  ParamStore store(cpu_device(), 7);
  // kaiming_uniform_(a=sqrt(5)) on (out=64, in=100): U(-1/sqrt(100), 1/sqrt(100)).
  auto k = store.value(store.declare(decl("k", {64, 100}, 0, ENG_F32, ENG_INIT_KAIMING_UNIFORM, 5.0)))
               .to_double_vector();
  double mx = 0, sum = 0, sq = 0;
  for (double v : k) mx = std::max(mx, std::abs(v)), sum += v, sq += v * v;
  const double bound = 0.1;
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.99 * bound);
  EXPECT_NEAR(sum / k.size(), 0.0, 0.005);
  EXPECT_NEAR(sq / k.size(), bound * bound / 3, 0.0005);  // variance of U(-b, b)
  auto n =
      store.value(store.declare(decl("n", {10000}, 0, ENG_F32, ENG_INIT_NORMAL, 0.5))).to_double_vector();
  sum = sq = 0;
  for (double v : n) sum += v, sq += v * v;
  EXPECT_NEAR(sum / n.size(), 0.0, 0.02);
  EXPECT_NEAR(std::sqrt(sq / n.size()), 0.5, 0.02);
  auto u =
      store.value(store.declare(decl("u", {1000}, 0, ENG_F32, ENG_INIT_UNIFORM, 0.3))).to_double_vector();
  for (double v : u) EXPECT_LE(std::abs(v), 0.3);
  for (double v : store.value(store.declare(decl("o", {5}, 0, ENG_F32, ENG_INIT_ONES))).to_double_vector())
    EXPECT_EQ(v, 1.0);
  for (double v : store.value(store.declare(decl("z", {5}, 0, ENG_F32, ENG_INIT_ZEROS))).to_double_vector())
    EXPECT_EQ(v, 0.0);
}

TEST(ParamStore, TiedParametersShareValueAndGradient) {
  ParamStore store(cpu_device(), 1);
  Param& emb = store.declare(decl("model.embed_tokens.weight", {6}, ENG_PARAM_TRAINABLE, ENG_F32));
  ParamDecl head = decl("lm_head.weight", {6}, ENG_PARAM_TRAINABLE | ENG_PARAM_TIED);
  head.tied_to = "model.embed_tokens.weight";
  Param& lm = store.declare(head);
  EXPECT_TRUE(lm.tied());
  EXPECT_EQ(store.value(lm).raw_data(), store.value(emb).raw_data());
  Tape tape;
  // loss = sum(emb * lm) = sum(w^2): both uses land in one fp32 gradient, 2 w.
  Tensor m =
      tape.apply(std::make_unique<testing::MulNode>(nullptr), {store.use(emb, tape), store.use(lm, tape)})
          .at(0);
  tape.backward(tape.apply(std::make_unique<testing::SumNode>(nullptr), {m}).at(0));
  ASSERT_TRUE(store.grad(lm).defined());
  EXPECT_EQ(store.grad(lm).raw_data(), store.grad(emb).raw_data());
  EXPECT_EQ(store.grad(emb).dtype(), ENG_F32);
  auto w = store.value(emb).to_double_vector(), g = store.grad(emb).to_double_vector();
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(g[i], 2 * w[i], 1e-6);
  // Freezing through the tie freezes the root.
  store.set_trainable(lm, false);
  EXPECT_FALSE(emb.trainable());
  EXPECT_FALSE(Tape::requires_grad(store.use(emb, tape)));
}

TEST(ParamStore, GradientAccumulatesAcrossUsesAndPasses) {
  ParamStore store(cpu_device(), 3);
  Param& w = store.declare(decl("w", {5}, ENG_PARAM_TRAINABLE, ENG_F32));
  Tensor x = Tensor::from_vector(Dims{5}, ENG_F32, cpu_device(), std::vector<float>{1, 2, 3, 4, 5});
  EXPECT_FALSE(store.grad(w).defined());
  for (int pass = 0; pass < 2; ++pass) {
    Tape tape;
    // loss = sum(w * x) + sum(w): two leaves of one parameter; each pass adds x + 1 to the gradient
    Tensor a = tape.apply(std::make_unique<testing::MulNode>(nullptr), {store.use(w, tape), x}).at(0);
    Tensor s = tape.apply(std::make_unique<testing::AddNode>(nullptr), {a, store.use(w, tape)}).at(0);
    tape.backward(tape.apply(std::make_unique<testing::SumNode>(nullptr), {s}).at(0));
  }
  auto g = store.grad(w).to_double_vector();
  EXPECT_EQ(g, (std::vector<double>{4, 6, 8, 10, 12}));
  store.zero_grads();
  for (double v : store.grad(w).to_double_vector()) EXPECT_EQ(v, 0.0);
  store.clear_grads();
  EXPECT_FALSE(store.grad(w).defined());
}

TEST(ParamStore, CheckpointedBlocksReResolveParametersAtReplay) {
  // A sharding strategy may release a parameter's full value after the block's forward and re-gather it
  // before its backward: a checkpointed block must keep no reference to the value in between.
  std::vector<double> grads[2];
  for (int ckpt = 0; ckpt < 2; ++ckpt) {
    ParamStore store(cpu_device(), 5);
    Param& w = store.declare(decl("w", {8}), 0);
    Tensor x =
        Tensor::from_vector(Dims{8}, ENG_F64, cpu_device(), std::vector<double>{1, -2, 3, -4, 5, -6, 7, -8});
    Tape tape;
    tape.set_checkpointing(ckpt == 1);
    tape.block_begin(0);
    Tensor y = tape.apply(std::make_unique<testing::MulNode>(nullptr), {store.use(w, tape), x}).at(0);
    y = tape.apply(std::make_unique<testing::TanhNode>(nullptr), {y}).at(0);
    y = tape.apply(std::make_unique<testing::MulNode>(nullptr), {y, store.use(w, tape)}).at(0);
    tape.block_end(0);
    Tensor loss = tape.apply(std::make_unique<testing::SumNode>(nullptr), {y}).at(0);
    y = Tensor();
    std::weak_ptr<Storage> released = store.value(w).impl()->storage;
    // "Release" and "re-gather": the store now holds an equal value in new storage.
    w.value = store.value(w).clone();
    if (ckpt == 1) {
      EXPECT_TRUE(released.expired()) << "the checkpointed block still holds the released value";
    } else {
      EXPECT_FALSE(released.expired());  // without checkpointing the nodes saved it (the control case)
    }
    tape.backward(loss);
    grads[ckpt] = store.grad(w).to_double_vector();
  }
  EXPECT_EQ(grads[0], grads[1]);
}

TEST(ParamStore, LoadReadsByNameAndListsMissingAndUnexpected) {
  ParamStore store(cpu_device(), 1);
  Param& a = store.declare(decl("a", {2, 2}, 0, ENG_BF16));
  store.declare(decl("b", {3}));
  ParamDecl adapter = decl("lora_A", {2, 2});
  adapter.role = ENG_ROLE_ADAPTER;
  store.declare(adapter);
  std::map<std::string, std::vector<float>> src = {{"a", {1, 2, 3, 4}}, {"b", {5, 6, 7}}, {"extra", {0}}};
  auto read = [&](const std::string& name, Tensor& dst) {
    auto it = src.find(name);
    if (it == src.end()) return false;
    dst.copy_from(Tensor::from_vector(dst.shape(), ENG_F32, cpu_device(), it->second));
    return true;
  };
  std::string msg = error_of([&] { load_params(store, {"a", "extra", "extra2"}, read); });
  EXPECT_NE(msg.find("missing 1 (b)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected 2 (extra, extra2)"), std::string::npos) << msg;
  EXPECT_FALSE(a.loaded);  // nothing is read when the names do not match
  LoadReport r = load_params(store, {"a", "b", "extra"}, read, LoadOptions{false, true});
  EXPECT_EQ(r.loaded, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.unexpected, (std::vector<std::string>{"extra"}));
  EXPECT_EQ(store.value(a).dtype(), ENG_BF16);
  EXPECT_EQ(store.value(a).to_double_vector(), (std::vector<double>{1, 2, 3, 4}));
  EXPECT_EQ(store.value(store.get("b")).to_double_vector(), (std::vector<double>{5, 6, 7}));
}

// A quantizer that keeps a scaled copy as its "quantized" state and counts live states.
class CopyQuantizer final : public Quantizer {
 public:
  int live = 0;
  std::string name() const override { return "copy"; }
  bool takes(const Param& p) override { return p.decl.role == ENG_ROLE_LINEAR; }
  void* quantize(Param&, const Tensor& value) override {
    ++live;
    return new Tensor(value.to(ENG_F32));
  }
  Tensor linear(void*, const Tensor& x) override { return x; }
  Tensor dequantize(void* state, DType dtype) override { return static_cast<Tensor*>(state)->to(dtype); }
  void free_state(void* state) noexcept override {
    --live;
    delete static_cast<Tensor*>(state);
  }
};

TEST(ParamStore, QuantizerTakesFrozenLinearsAndRefusesTrainableOnes) {
  CopyQuantizer q;
  {
    ParamStore store(cpu_device(), 1);
    ParamDecl w = decl("w", {2, 2}, ENG_PARAM_TRAINABLE, ENG_BF16);
    w.role = ENG_ROLE_LINEAR;
    Param& wp = store.declare(w);
    ParamDecl v = decl("v", {2, 2}, 0, ENG_BF16);
    v.role = ENG_ROLE_LINEAR;
    Param& vp = store.declare(v);
    store.declare(decl("norm", {2}, 0, ENG_BF16));
    std::string msg = error_of([&] { store.assign_quantizer(q); });
    EXPECT_NE(msg.find("takes trainable parameters (w)"), std::string::npos) << msg;
    store.set_trainable(wp, false);
    store.value(wp);  // materialised before: quantized at assignment
    store.assign_quantizer(q);
    EXPECT_TRUE(wp.quantized());
    EXPECT_TRUE(wp.flags & ENG_PARAM_QUANTIZED);
    EXPECT_FALSE(wp.value.defined());
    EXPECT_EQ(q.live, 1);
    msg = error_of([&] { store.value(wp); });
    EXPECT_NE(msg.find("held quantized by the copy quantizer"), std::string::npos) << msg;
    msg = error_of([&] { store.set_trainable(vp, true); });
    EXPECT_NE(msg.find("cannot be trained"), std::string::npos) << msg;
    load_params(store, {"v", "w", "norm"}, [&](const std::string&, Tensor& dst) {
      dst.copy_from(Tensor::full(dst.shape(), ENG_F32, cpu_device(), 3.0));
      return true;
    });
    EXPECT_EQ(q.live, 2);
    auto dv = q.dequantize(vp.quant_state, ENG_F32).to_double_vector();
    EXPECT_EQ(dv, (std::vector<double>{3, 3, 3, 3}));
  }
  EXPECT_EQ(q.live, 0);  // the store freed every state through the quantizer
}

}  // namespace
}  // namespace engine::rt

namespace engine::rt {
namespace {

// Rank `rank` of 2: the other rank's shards come from `truth` (what every rank loaded) and its gradient equals
// this rank's, so a reduce-scatter doubles this rank's slice.
class TwoRanks final : public Communicator {
 public:
  TwoRanks(int rank, std::map<int64_t, Tensor> truth_by_numel) : rank_(rank), truth_(std::move(truth_by_numel)) {}
  int rank() const override { return rank_; }
  int world_size() const override { return 2; }
  void all_reduce_sum(Tensor& t) override { t.copy_from(t.clone()); }
  void broadcast(Tensor&, int) override {}
  void all_gather(const Tensor& shard, Tensor& full) override {
    ++gathers;
    const int64_t s = shard.numel();
    std::vector<double> out(static_cast<size_t>(2 * s), 0.0);
    const std::vector<double> truth = truth_.at(2 * s).to_double_vector();
    const std::vector<double> mine = shard.to_double_vector();
    for (int64_t i = 0; i < 2 * s; ++i) out[size_t(i)] = i / s == rank_ ? mine[size_t(i % s)] : truth[size_t(i)];
    full.copy_from(Tensor::from_vector(Dims{2 * s}, ENG_F64, cpu_device(), out));
  }
  void reduce_scatter_sum(const Tensor& full, Tensor& shard) override {
    const int64_t s = shard.numel();
    std::vector<double> f = full.to_double_vector(), out(static_cast<size_t>(s), 0.0);
    for (int64_t i = 0; i < s; ++i) out[size_t(i)] = 2 * f[size_t(rank_ * s + i)];
    shard.copy_from(Tensor::from_vector(Dims{s}, ENG_F64, cpu_device(), out));
  }
  void barrier() override {}
  int gathers = 0;

 private:
  int rank_;
  std::map<int64_t, Tensor> truth_;
};

TEST(ParamStorePlacement, ShardsGatherIntoTheSameStorageAndGradientsReduceIntoTheLocalShard) {
  ParamStore store(cpu_device(), 9);
  Param& w = store.declare(decl("w", {5}), 0);  // 5 elements over 2 ranks: shards of 3, rank 1 padded
  const std::vector<double> original = store.value(w).to_double_vector();
  Tensor truth = Tensor::zeros(Dims{6}, ENG_F32, cpu_device());
  truth.sliced(0, 0, 5).copy_from(store.value(w));
  TwoRanks comm(1, {{6, truth}});
  store.set_communicator(&comm);
  EXPECT_NE(error_of([&] { store.set_local(w, 2); }).find("cannot hold its 5 elements"), std::string::npos);
  store.set_local(w, 3);
  store.apply_placement();
  EXPECT_TRUE(store.any_sharded());
  EXPECT_EQ(store.local(w).to_double_vector(), (std::vector<double>{original[3], original[4], 0.0}));
  EXPECT_EQ(store.local_param_bytes(), 3 * 4);
  const std::shared_ptr<Storage> full = w.placement.flat->full.impl()->storage;
  EXPECT_TRUE(full->released()) << "at rest only the shard is held";
  EXPECT_NE(error_of([&] { (void)full->data(); }).find("used while its memory is released"), std::string::npos);

  // value() gathers on demand; a tape reference survives release and sees the weights after the next gather.
  Tensor x = Tensor::from_vector(Dims{5}, ENG_F32, cpu_device(), std::vector<float>{1, 2, 3, 4, 5});
  Tape tape;
  Tensor y = tape.apply(std::make_unique<testing::MulNode>(nullptr), {store.use(w, tape), x}).at(0);
  Tensor loss = tape.apply(std::make_unique<testing::SumNode>(nullptr), {y}).at(0);
  EXPECT_EQ(comm.gathers, 1);
  EXPECT_EQ(store.value(w).to_double_vector(), original);
  store.release(w);
  EXPECT_TRUE(full->released());
  store.gather(w);
  EXPECT_EQ(full.get(), w.placement.flat->full.impl()->storage.get()) << "gathered into the same storage";
  tape.backward(loss);
  EXPECT_EQ(store.grad(w).to_double_vector(), (std::vector<double>{1, 2, 3, 4, 5}));

  store.reduce_grad(w);
  EXPECT_FALSE(store.grad(w).defined()) << "the full gradient is freed once reduced";
  EXPECT_EQ(store.local_grad(w).to_double_vector(), (std::vector<double>{8, 10, 0}));  // 2 ranks x {4, 5}, pad
  store.reduce_grad(w);  // a second micro-batch without a gradient adds zeros
  EXPECT_EQ(store.local_grad(w).to_double_vector(), (std::vector<double>{8, 10, 0}));
  store.zero_grads();
  EXPECT_EQ(store.local_grad(w).to_double_vector(), (std::vector<double>{0, 0, 0}));

  // A value written whole (a checkpoint loaded into the gathered value) is cut into the shard again.
  store.value(w).copy_from(Tensor::from_vector(Dims{5}, ENG_F32, cpu_device(), std::vector<float>{5, 6, 7, 8, 9}));
  store.refresh_local(w);
  EXPECT_EQ(store.local(w).to_double_vector(), (std::vector<double>{8, 9, 0}));
  store.set_pinned(true);
  store.release(w);
  EXPECT_FALSE(full->released()) << "pinned values stay gathered";
  store.set_pinned(false);
  store.release(w);
  EXPECT_TRUE(full->released());
  EXPECT_NE(error_of([&] { store.set_trainable(w, false); }).find("placed as a shard"), std::string::npos);
}

TEST(ParamStorePlacement, AFlatBufferShardsSeveralParametersAsOneAndGivesEachItsPartOfTheShard) {
  ParamStore store(cpu_device(), 9);
  Param& a = store.declare(decl("a", {2, 2}), 0);
  Param& b = store.declare(decl("b", {3}), 0);
  Param& frozen = store.declare(decl("frozen", {3}, 0, ENG_BF16), 0);
  // 4 + 3 = 7 elements over 2 ranks: shards of 4; rank 1 holds flat [4, 8): none of a, all of b, one pad.
  const std::vector<double> va = store.value(a).to_double_vector(), vb = store.value(b).to_double_vector();
  (void)store.value(frozen);  // materialised: it counts in the bytes at rest
  Tensor truth = Tensor::zeros(Dims{8}, ENG_F32, cpu_device());
  truth.sliced(0, 0, 4).copy_from(store.value(a).view(Dims{4}));
  truth.sliced(0, 4, 7).copy_from(store.value(b));
  TwoRanks comm(1, {{8, truth}});
  store.set_communicator(&comm);
  EXPECT_NE(error_of([&] { store.set_local_flat({&a, &frozen}); }).find("cannot share one flat buffer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { store.set_local_flat({&a, &a}); }).find("listed twice"), std::string::npos);
  store.set_local_flat({&a, &b});
  EXPECT_NE(error_of([&] { store.set_local(b, 4); }).find("already placed"), std::string::npos);
  store.apply_placement();
  EXPECT_EQ(store.local_range(a), (std::pair<int64_t, int64_t>{0, 0}));
  EXPECT_EQ(store.local_range(b), (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(store.local(a).numel(), 0) << "a lies wholly in rank 0's shard";
  EXPECT_EQ(store.local(b).to_double_vector(), vb);
  EXPECT_EQ(store.local_param_bytes(), 4 * 4 + 3 * 2) << "the shard once, and the frozen bf16 value whole";
  const std::shared_ptr<Storage> full = a.placement.flat->full.impl()->storage;
  EXPECT_EQ(full.get(), b.placement.flat->full.impl()->storage.get()) << "one buffer for both";
  EXPECT_TRUE(full->released());

  // Gathering one member gathers both in one collective; each value is a view of its own elements.
  EXPECT_EQ(store.value(b).to_double_vector(), vb);
  EXPECT_EQ(comm.gathers, 1);
  EXPECT_EQ(store.value(a).to_double_vector(), va);
  EXPECT_EQ(comm.gathers, 1);
  Tape tape;
  Tensor xa = Tensor::from_vector(Dims{2, 2}, ENG_F32, cpu_device(), std::vector<float>{1, 2, 3, 4});
  Tensor xb = Tensor::from_vector(Dims{3}, ENG_F32, cpu_device(), std::vector<float>{5, 6, 7});
  Tensor la = tape.apply(std::make_unique<testing::SumNode>(nullptr),
                         {tape.apply(std::make_unique<testing::MulNode>(nullptr), {store.use(a, tape), xa}).at(0)})
                  .at(0);
  tape.backward(la);
  Tape tape_b;
  Tensor lb = tape_b.apply(std::make_unique<testing::SumNode>(nullptr),
                           {tape_b.apply(std::make_unique<testing::MulNode>(nullptr), {store.use(b, tape_b), xb}).at(0)})
                  .at(0);
  tape_b.backward(lb);
  store.reduce_grad(a);  // one reduce-scatter for the buffer: both gradients are consumed
  EXPECT_FALSE(store.grad(a).defined());
  EXPECT_FALSE(store.grad(b).defined());
  EXPECT_EQ(store.local_grad(a).numel(), 0);
  EXPECT_EQ(store.local_grad(b).to_double_vector(), (std::vector<double>{10, 12, 14}));  // 2 ranks x xb
  store.release(b);
  EXPECT_TRUE(full->released());
}

}  // namespace
}  // namespace engine::rt
