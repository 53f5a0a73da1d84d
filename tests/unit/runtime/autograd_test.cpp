// Tests of the autograd tape (engine/runtime/autograd.cpp) with the small test nodes of test_nodes.hpp.
#include "engine/runtime/autograd.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <cstring>
#include <random>

#include "engine/core/error.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "tests/unit/runtime/test_nodes.hpp"

namespace engine::rt {
namespace {

using testing::AddNode;
using testing::IdentityNode;
using testing::MulNode;
using testing::NodeCounters;
using testing::SumNode;
using testing::TanhNode;

Tensor random_f64(const Dims& shape, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(-1.5, 1.5);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (double& x : v) x = dist(gen);
  return Tensor::from_vector(shape, ENG_F64, cpu_device(), v);
}

std::shared_ptr<GradSink> sink_for(const Tensor& t) {
  return std::make_shared<GradSink>(t.shape(), ENG_F64, t.device());
}

Tensor run1(Tape& tape, std::unique_ptr<Node> node, std::vector<Tensor> inputs) {
  return tape.apply(std::move(node), inputs).at(0);
}

TEST(Tape, BackwardOfSmallGraphMatchesAnalyticGradients) {
  Tape tape;
  Tensor a0 = random_f64({2, 3}, 1), b0 = random_f64({2, 3}, 2);
  auto sa = sink_for(a0), sb = sink_for(b0);
  Tensor a = tape.leaf(a0, sa), b = tape.leaf(b0, sb);
  // loss = sum(tanh(a * b) + a)
  Tensor ab = run1(tape, std::make_unique<MulNode>(nullptr), {a, b});
  Tensor t = run1(tape, std::make_unique<TanhNode>(nullptr), {ab});
  Tensor s = run1(tape, std::make_unique<AddNode>(nullptr), {t, a});
  Tensor loss = run1(tape, std::make_unique<SumNode>(nullptr), {s});
  EXPECT_EQ(tape.size(), 4u);
  tape.backward(loss);
  EXPECT_EQ(tape.size(), 0u);
  auto av = a0.to_double_vector(), bv = b0.to_double_vector();
  auto ga = sa->grad().to_double_vector(), gb = sb->grad().to_double_vector();
  for (size_t i = 0; i < av.size(); ++i) {
    const double d = 1.0 - std::pow(std::tanh(av[i] * bv[i]), 2);
    EXPECT_NEAR(ga[i], d * bv[i] + 1.0, 1e-12) << i;
    EXPECT_NEAR(gb[i], d * av[i], 1e-12) << i;
  }
}

TEST(Tape, BackwardMatchesCentralFiniteDifferences) {
  Tensor a0 = random_f64({5}, 3), b0 = random_f64({5}, 4);
  auto f = [&](const Tensor& a, const Tensor& b) {  // sum(tanh(a*b) * a)
    Tape tape;
    NoGradGuard off(tape);
    Tensor ab = run1(tape, std::make_unique<MulNode>(nullptr), {a, b});
    Tensor t = run1(tape, std::make_unique<TanhNode>(nullptr), {ab});
    Tensor m = run1(tape, std::make_unique<MulNode>(nullptr), {t, a});
    return run1(tape, std::make_unique<SumNode>(nullptr), {m}).item();
  };
  Tape tape;
  auto sa = sink_for(a0);
  Tensor a = tape.leaf(a0, sa);
  Tensor ab = run1(tape, std::make_unique<MulNode>(nullptr), {a, b0});
  Tensor t = run1(tape, std::make_unique<TanhNode>(nullptr), {ab});
  Tensor m = run1(tape, std::make_unique<MulNode>(nullptr), {t, a});
  tape.backward(run1(tape, std::make_unique<SumNode>(nullptr), {m}));
  auto g = sa->grad().to_double_vector();
  const double h = 1e-6;
  for (int64_t i = 0; i < 5; ++i) {
    Tensor p = a0.clone(), q = a0.clone();
    p.data<double>()[i] += h;
    q.data<double>()[i] -= h;
    EXPECT_NEAR(g[static_cast<size_t>(i)], (f(p, b0) - f(q, b0)) / (2 * h), 1e-7) << i;
  }
}

TEST(Tape, ValueUsedTwiceGetsTheSumOfBothGradients) {
  Tape tape;
  Tensor x0 = random_f64({4}, 5);
  auto sx = sink_for(x0);
  Tensor x = tape.leaf(x0, sx);
  Tensor y = run1(tape, std::make_unique<TanhNode>(nullptr), {x});
  // loss = sum(y * y + y): y is used three times; AddNode hands one gradient tensor to both inputs.
  Tensor yy = run1(tape, std::make_unique<MulNode>(nullptr), {y, y});
  Tensor s = run1(tape, std::make_unique<AddNode>(nullptr), {yy, y});
  tape.backward(run1(tape, std::make_unique<SumNode>(nullptr), {s}));
  auto xv = x0.to_double_vector(), g = sx->grad().to_double_vector();
  for (size_t i = 0; i < xv.size(); ++i) {
    const double yv = std::tanh(xv[i]);
    EXPECT_NEAR(g[i], (2 * yv + 1) * (1 - yv * yv), 1e-12);
  }
}

// The sum of two contributions to an intermediate gradient goes into the pending one when nothing else holds
// it, else into a new tensor (a gradient one node handed to two inputs must not change under the other).
TEST(Tape, AddGradientsWritesIntoTheAccumulatorOnlyWhenItIsTheSoleHandle) {
  const Tensor g = random_f64({16}, 7);
  Tensor acc = random_f64({16}, 8);
  const std::vector<double> a0 = acc.to_double_vector(), gv = g.to_double_vector();
  const Tensor shared = acc;  // a second handle: not in place
  const Tensor out = add_gradients(acc, g);
  EXPECT_NE(out.impl(), acc.impl());
  EXPECT_EQ(acc.to_double_vector(), a0);
  Tensor sole = random_f64({16}, 8);
  const TensorImpl* before = sole.impl();
  const Tensor in_place = add_gradients(sole, g);
  EXPECT_EQ(in_place.impl(), before);
  EXPECT_EQ(in_place.to_double_vector(), out.to_double_vector());
  for (size_t i = 0; i < a0.size(); ++i) EXPECT_DOUBLE_EQ(out.to_double_vector()[i], a0[i] + gv[i]);
}

TEST(Tape, GradientsAccumulateOverTwoBackwardPasses) {
  Tensor w0 = random_f64({3}, 6), x1 = random_f64({3}, 7), x2 = random_f64({3}, 8);
  auto grad_of = [&](const std::vector<Tensor>& xs) {
    Tape tape;
    auto sink = sink_for(w0);
    for (const Tensor& x : xs) {
      Tensor w = tape.leaf(w0, sink);
      Tensor y = run1(tape, std::make_unique<MulNode>(nullptr), {w, x});
      Tensor t = run1(tape, std::make_unique<TanhNode>(nullptr), {y});
      tape.backward(run1(tape, std::make_unique<SumNode>(nullptr), {t}));
    }
    return sink->grad().to_double_vector();
  };
  auto g1 = grad_of({x1}), g2 = grad_of({x2}), g12 = grad_of({x1, x2});
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NE(g1[i], 0.0);
    EXPECT_EQ(g12[i], g1[i] + g2[i]) << i;  // the sink adds the second pass onto the first, in that order
  }
}

TEST(Tape, SinkZeroKeepsBufferAndClearFreesIt) {
  Tape tape;
  Tensor w0 = random_f64({3}, 9);
  auto sink = sink_for(w0);
  int ready = 0;
  sink->on_accumulated = [&] { ++ready; };
  Tensor w = tape.leaf(w0, sink);
  tape.backward(run1(tape, std::make_unique<SumNode>(nullptr), {w}));
  EXPECT_EQ(ready, 1);
  ASSERT_TRUE(sink->grad().defined());
  const void* buffer = sink->grad().raw_data();
  sink->zero();
  EXPECT_EQ(sink->grad().raw_data(), buffer);
  for (double v : sink->grad().to_double_vector()) EXPECT_EQ(v, 0.0);
  sink->clear();
  EXPECT_FALSE(sink->grad().defined());
}

TEST(Tape, NoGradRegionRecordsNothing) {
  Tape tape;
  Tensor a = tape.leaf(random_f64({3}, 10), sink_for(random_f64({3}, 10)));
  Tensor y;
  {
    NoGradGuard guard(tape);
    EXPECT_FALSE(tape.grad_enabled());
    y = run1(tape, std::make_unique<TanhNode>(nullptr), {a});
  }
  EXPECT_TRUE(tape.grad_enabled());
  EXPECT_EQ(tape.size(), 0u);
  EXPECT_FALSE(Tape::requires_grad(y));
  try {
    tape.backward(y);
    FAIL() << "backward of a value computed without grad must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not require grad"), std::string::npos) << e.what();
  }
}

TEST(Tape, NodesWithoutGradInputsAreNotRecorded) {
  Tape tape;
  NodeCounters c;
  Tensor y = run1(tape, std::make_unique<TanhNode>(&c), {random_f64({3}, 11)});
  EXPECT_EQ(tape.size(), 0u);
  EXPECT_EQ(c.forwards_saving, 0);  // a node that is not recorded is not asked to save
  EXPECT_FALSE(Tape::requires_grad(y));
}

TEST(Tape, BackwardReleasesSavedTensorsAndFreesMemory) {
  Device& dev = cpu_device();
  Tape tape;
  NodeCounters c;
  Tensor w0 = random_f64({256}, 12);
  auto sink = sink_for(w0);
  const int64_t before = dev.memory_stats().current_bytes;
  {
    Tensor h = tape.leaf(w0, sink);
    for (int i = 0; i < 4; ++i) h = run1(tape, std::make_unique<TanhNode>(&c), {h});
    Tensor loss = run1(tape, std::make_unique<SumNode>(&c), {h});
    h = Tensor();
    tape.backward(loss);
  }
  EXPECT_EQ(c.forwards_saving, 5);
  EXPECT_EQ(c.backwards, 5);
  EXPECT_EQ(c.releases, 5);
  EXPECT_EQ(tape.size(), 0u);
  // Only the persistent gradient remains allocated.
  EXPECT_EQ(dev.memory_stats().current_bytes - before, static_cast<int64_t>(sink->grad().nbytes()));
}

// Records, at each forward that saves, which inputs the tape says need a gradient ({a, b} -> a * b).
class NeedsProbeNode final : public Node {
 public:
  explicit NeedsProbeNode(std::vector<std::vector<bool>>* seen) : seen_(seen) {}
  const char* name() const override { return "test.needs_probe"; }
  std::vector<Tensor> forward(const std::vector<Tensor>& in, bool save) override {
    if (save) {
      seen_->push_back({input_needs_grad(0), input_needs_grad(1)});
      a_ = in[0], b_ = in[1];
    }
    return {testing::map2(in[0], in[1], [](double x, double y) { return x * y; })};
  }
  std::vector<Tensor> backward(const std::vector<Tensor>& g, const std::vector<bool>& needs) override {
    std::vector<Tensor> r(2);
    if (needs[0]) r[0] = testing::map2(g[0], b_, [](double x, double y) { return x * y; });
    if (needs[1]) r[1] = testing::map2(g[0], a_, [](double x, double y) { return x * y; });
    return r;
  }
  void release_saved() override { a_ = b_ = Tensor(); }

 private:
  std::vector<std::vector<bool>>* seen_;
  Tensor a_, b_;
};

// A node saves less where an input needs no gradient (linear: a frozen weight's input), so the tape must say
// which do before each saving forward: the recorded forward and a checkpointed block's replay alike.
TEST(Tape, NodesAreToldWhichInputsNeedAGradientInForwardAndReplay) {
  for (bool checkpointed : {false, true}) {
    Tape tape;
    tape.set_checkpointing(checkpointed);
    std::vector<std::vector<bool>> seen;
    const Tensor a0 = random_f64({8}, 31), frozen = random_f64({8}, 32);
    auto sink = sink_for(a0);
    tape.block_begin(0);
    Tensor y = run1(tape, std::make_unique<NeedsProbeNode>(&seen), {tape.leaf(a0, sink), frozen});
    tape.block_end(0);
    Tensor loss = run1(tape, std::make_unique<SumNode>(nullptr), {y});
    y = Tensor();
    tape.backward(loss);
    ASSERT_EQ(seen.size(), 1u) << (checkpointed ? "replay" : "forward");
    EXPECT_EQ(seen[0], (std::vector<bool>{true, false})) << (checkpointed ? "replay" : "forward");
    std::vector<double> g(8), f(8);
    sink->grad().copy_to_host(g.data(), g.size() * sizeof(double));
    frozen.copy_to_host(f.data(), f.size() * sizeof(double));
    EXPECT_EQ(g, f);
  }
}

// The whole path: on the tape, linear of a frozen weight holds not its input, which goes with its last holder.
TEST(Tape, LinearOfAFrozenWeightLetsItsInputGo) {
  Tape tape;
  const Tensor a0 = random_f64({6, 4}, 33), w = random_f64({3, 4}, 34);
  auto sink = sink_for(a0);
  const Tensor a = tape.leaf(a0, sink);
  Tensor h = run1(tape, std::make_unique<AddNode>(nullptr), {a, a});  // 2a, saved by nothing else
  std::weak_ptr<Storage> hs = h.impl()->storage;
  Tensor y = run1(tape, ops::make_linear(), {h, w});
  h = Tensor();
  EXPECT_TRUE(hs.expired()) << "linear held the input of a weight that needs no gradient";
  Tensor loss = run1(tape, std::make_unique<SumNode>(nullptr), {y});
  y = Tensor();
  tape.backward(loss);
  // d/da sum((2a) W^T) = 2 * (column sums of W) in every row.
  std::vector<double> g(24), wv(12);
  sink->grad().copy_to_host(g.data(), g.size() * sizeof(double));
  w.copy_to_host(wv.data(), wv.size() * sizeof(double));
  for (int r = 0; r < 6; ++r)
    for (int k = 0; k < 4; ++k) EXPECT_DOUBLE_EQ(g[r * 4 + k], 2 * (wv[k] + wv[4 + k] + wv[8 + k]));
}

TEST(Tape, NodeReturningItsInputGetsAFreshIdentity) {
  Tape tape;
  Tensor x0 = random_f64({3}, 13);
  auto sx = sink_for(x0);
  Tensor x = tape.leaf(x0, sx);
  Tensor y = run1(tape, std::make_unique<IdentityNode>(nullptr), {x});
  ASSERT_NE(y.impl(), x.impl());
  EXPECT_NE(y.impl()->autograd->value_id, x.impl()->autograd->value_id);
  EXPECT_EQ(x.impl()->autograd->sink, sx);                            // the leaf keeps its sink
  Tensor s = run1(tape, std::make_unique<MulNode>(nullptr), {y, x});  // x * x through two identities
  tape.backward(run1(tape, std::make_unique<SumNode>(nullptr), {s}));
  auto xv = x0.to_double_vector(), g = sx->grad().to_double_vector();
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(g[i], 2 * xv[i], 1e-12);
}

TEST(Tape, BlockMisuseIsReportedClearly) {
  Tape tape;
  tape.block_begin(0);
  EXPECT_THROW(tape.block_begin(1), Error);
  EXPECT_THROW(tape.block_end(1), Error);
  tape.block_end(0);
  EXPECT_THROW(tape.block_end(0), Error);
  EXPECT_THROW(tape.block_begin(-1), Error);
}

// A stack of blocks; each block: h = tanh(tanh(tanh(h * w_i) * u_i) * w_i) + h: three saved intermediates of
// the block's size besides its output, like the many activations a transformer block keeps.
struct BlockModel {
  std::vector<Tensor> w, u;
  std::vector<std::shared_ptr<GradSink>> sw, su;
  Tensor x;
  bool rebind_params = false;
  BlockModel(int blocks, int64_t n) {
    for (int i = 0; i < blocks; ++i) {
      w.push_back(random_f64({n}, 100 + i));
      u.push_back(random_f64({n}, 200 + i));
      sw.push_back(sink_for(w.back()));
      su.push_back(sink_for(u.back()));
    }
    x = random_f64({n}, 300);
  }
  // One forward + backward; returns the peak bytes above the starting point.
  int64_t step(Tape& tape, NodeCounters* c) {
    Device& dev = cpu_device();
    const int64_t base = dev.memory_stats().current_bytes;
    dev.reset_peak_memory();
    Tensor h = x;
    for (size_t i = 0; i < w.size(); ++i) {
      tape.block_begin(static_cast<int>(i));
      Tensor wi, ui;
      if (rebind_params) {  // as the engine's parameters: re-resolved at replay, never kept by the block
        wi = tape.leaf(w[i], sw[i], [v = w[i]] { return v; });
        ui = tape.leaf(u[i], su[i], [v = u[i]] { return v; });
      } else {
        wi = tape.leaf(w[i], sw[i]);
        ui = tape.leaf(u[i], su[i]);
      }
      Tensor t =
          run1(tape, std::make_unique<TanhNode>(c), {run1(tape, std::make_unique<MulNode>(c), {h, wi})});
      t = run1(tape, std::make_unique<TanhNode>(c), {run1(tape, std::make_unique<MulNode>(c), {t, ui})});
      t = run1(tape, std::make_unique<TanhNode>(c), {run1(tape, std::make_unique<MulNode>(c), {t, wi})});
      h = run1(tape, std::make_unique<AddNode>(c), {t, h});
      tape.block_end(static_cast<int>(i));
    }
    Tensor loss = run1(tape, std::make_unique<SumNode>(c), {h});
    h = Tensor();
    tape.backward(loss);
    return dev.memory_stats().peak_bytes - base;
  }
};

TEST(Tape, CheckpointingGivesBitwiseIdenticalGradientsAndLowerPeakMemory) {
  const int blocks = 8;
  const int per_block = 7;  // nodes
  const int64_t n = 1 << 14;
  BlockModel plain(blocks, n), ckpt(blocks, n);
  // Allocate the gradients once so both peaks measure activations only.
  Tape warm;
  plain.step(warm, nullptr);
  ckpt.step(warm, nullptr);

  Tape t_plain, t_ckpt;
  t_ckpt.set_checkpointing(true);
  NodeCounters c_plain, c_ckpt;
  const int64_t peak_plain = plain.step(t_plain, &c_plain);
  const int64_t peak_ckpt = ckpt.step(t_ckpt, &c_ckpt);

  for (int i = 0; i < blocks; ++i) {
    const Tensor& a = plain.sw[static_cast<size_t>(i)]->grad();
    const Tensor& b = ckpt.sw[static_cast<size_t>(i)]->grad();
    EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0) << "w" << i;
    const Tensor& c = plain.su[static_cast<size_t>(i)]->grad();
    const Tensor& d = ckpt.su[static_cast<size_t>(i)]->grad();
    EXPECT_EQ(std::memcmp(c.raw_data(), d.raw_data(), c.nbytes()), 0) << "u" << i;
  }
  EXPECT_EQ(t_ckpt.last_backward_stats().blocks_replayed, blocks);
  EXPECT_EQ(t_ckpt.last_backward_stats().nodes_replayed, per_block * blocks);
  EXPECT_EQ(t_plain.last_backward_stats().blocks_replayed, 0);
  EXPECT_EQ(c_ckpt.forwards, 2 * per_block * blocks + 1);  // each block node in forward and again in replay
  EXPECT_EQ(c_ckpt.forwards_saving, per_block * blocks + 1);
  EXPECT_EQ(c_plain.forwards, per_block * blocks + 1);
  // Without checkpointing every block holds 4 tensors of n doubles until backward reaches it (3 saved
  // intermediates and its output); with it, the block outputs plus one replayed block at a time.
  const int64_t bytes = n * 8;
  EXPECT_GE(peak_plain, 4 * blocks * bytes);
  EXPECT_LE(peak_ckpt, (blocks + 12) * bytes) << "plain " << peak_plain << " checkpointed " << peak_ckpt;
  EXPECT_LT(peak_ckpt, peak_plain);
}

// A replayed block's values that no node saved (a chain of adds: LoRA's base output, the adapter's output)
// are dropped after their last use inside the block, not kept until the replay ends: the backward's peak holds
// a few of them, not the whole chain.
TEST(Tape, ReplayDropsEachValueAfterItsLastUseInTheBlock) {
  const int64_t n = 1 << 15, bytes = n * 8;
  const int chain = 12;
  const Tensor x = random_f64({n}, 1), w = random_f64({n}, 2);
  auto sink = sink_for(w);
  Tape tape;
  tape.set_checkpointing(true);
  // The gradient buffer first, so that the peak below is the replay's and the backward's own.
  sink->accumulate(Tensor::from_vector(Dims{n}, ENG_F64, cpu_device(), std::vector<double>(size_t(n), 0.0)));
  Device& dev = cpu_device();
  tape.block_begin(0);
  Tensor h = x;
  const Tensor wl = tape.leaf(w, sink);
  for (int i = 0; i < chain; ++i) h = run1(tape, std::make_unique<AddNode>(nullptr), {h, wl});
  tape.block_end(0);
  Tensor loss = run1(tape, std::make_unique<SumNode>(nullptr), {h});
  h = Tensor();
  const int64_t base = dev.memory_stats().current_bytes;
  dev.reset_peak_memory();
  tape.backward(loss);
  EXPECT_EQ(tape.last_backward_stats().blocks_replayed, 1);
  const int64_t peak = dev.memory_stats().peak_bytes - base;
  EXPECT_LE(peak, 4 * bytes) << "the replay held " << peak / bytes << " of the chain's " << chain << " values";
  // d/dw of sum(x + 12 w) = 12 per element.
  std::vector<double> g(static_cast<size_t>(n));
  sink->grad().copy_to_host(g.data(), g.size() * sizeof(double));
  for (size_t i = 0; i < g.size(); i += 4096) EXPECT_DOUBLE_EQ(g[i], double(chain));
}

TEST(Tape, ActivationOffloadGivesBitwiseIdenticalGradientsAndKeepsBlockInputsOffTheDevice) {
  const int blocks = 8;
  const int64_t n = 1 << 14;
  const int64_t bytes = n * 8;
  BlockModel ckpt(blocks, n), off(blocks, n);
  ckpt.rebind_params = off.rebind_params = true;
  Tape warm;
  ckpt.step(warm, nullptr);
  off.step(warm, nullptr);

  Tape t_ckpt, t_off;
  t_ckpt.set_checkpointing(true);
  t_off.set_checkpointing(true);
  t_off.set_activation_offload(true, /*min_bytes=*/1024);
  EXPECT_TRUE(t_off.activation_offload());
  for (auto& s : ckpt.sw) s->zero();
  for (auto& s : ckpt.su) s->zero();
  const int64_t peak_ckpt = ckpt.step(t_ckpt, nullptr);
  int64_t peak_off = 0;
  for (int step = 0; step < 2; ++step) {  // the second step reuses the first one's host buffers
    for (auto& s : off.sw) s->zero();
    for (auto& s : off.su) s->zero();
    peak_off = off.step(t_off, nullptr);
  }
  for (int i = 0; i < blocks; ++i) {
    const Tensor& a = ckpt.sw[static_cast<size_t>(i)]->grad();
    const Tensor& b = off.sw[static_cast<size_t>(i)]->grad();
    EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0) << "w" << i;
    const Tensor& c = ckpt.su[static_cast<size_t>(i)]->grad();
    const Tensor& d = off.su[static_cast<size_t>(i)]->grad();
    EXPECT_EQ(std::memcmp(c.raw_data(), d.raw_data(), c.nbytes()), 0) << "u" << i;
  }
  EXPECT_EQ(t_off.last_backward_stats().blocks_replayed, blocks);
  // Each block's input h, once, but the first block's: x is not a value of the tape (as the output of a
  // frozen embedding is not), and tensors off the tape (weights, constants) stay where they are.
  EXPECT_EQ(t_off.offloaded_bytes(), (blocks - 1) * bytes);
  EXPECT_EQ(t_ckpt.offloaded_bytes(), 0);
  // The block inputs no longer stay in the allocator: only two are on the device at any time.
  EXPECT_LT(peak_off, peak_ckpt - (blocks - 4) * bytes) << "checkpointed " << peak_ckpt << " offloaded " << peak_off;
}

TEST(Tape, ActivationOffloadCannotBeTurnedOffWithARecordedForward) {
  BlockModel m(2, 256);
  Tape tape;
  tape.set_checkpointing(true);
  tape.set_activation_offload(true, 64);
  Tensor h = m.x;
  tape.block_begin(0);
  Tensor w0 = tape.leaf(m.w[0], m.sw[0]);
  h = run1(tape, std::make_unique<MulNode>(nullptr), {h, w0});
  tape.block_end(0);
  EXPECT_THROW(tape.set_activation_offload(false), Error);
  tape.clear();
  tape.set_activation_offload(false);
  EXPECT_FALSE(tape.activation_offload());
}

TEST(Tape, SelectiveCheckpointingReplaysOnlyTheFirstNBlocksWithIdenticalGradients) {
  const int blocks = 6;
  const int per_block = 7;
  const int64_t n = 1 << 12;
  BlockModel plain(blocks, n), part(blocks, n);
  Tape warm;
  plain.step(warm, nullptr);
  part.step(warm, nullptr);
  Tape t_plain, t_part;
  t_part.set_checkpoint_blocks(2);
  EXPECT_TRUE(t_part.checkpoints_block(1));
  EXPECT_FALSE(t_part.checkpoints_block(2));
  NodeCounters c_plain, c_part;
  const int64_t peak_plain = plain.step(t_plain, &c_plain);
  const int64_t peak_part = part.step(t_part, &c_part);
  for (int i = 0; i < blocks; ++i) {
    const Tensor& a = plain.sw[static_cast<size_t>(i)]->grad();
    const Tensor& b = part.sw[static_cast<size_t>(i)]->grad();
    EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0) << "w" << i;
  }
  EXPECT_EQ(t_part.last_backward_stats().blocks_replayed, 2);
  EXPECT_EQ(t_part.last_backward_stats().nodes_replayed, per_block * 2);
  EXPECT_EQ(c_part.forwards, per_block * blocks + per_block * 2 + 1);
  EXPECT_LT(peak_part, peak_plain);
}

struct RecordingHooks final : BlockHooks {
  std::vector<std::string> events;
  void before_block(int block, BlockPhase phase) override {
    events.push_back("before " + std::to_string(block) + (phase == BlockPhase::Forward ? " fwd" : " bwd"));
  }
  void after_block(int block, BlockPhase phase) override {
    events.push_back("after " + std::to_string(block) + (phase == BlockPhase::Forward ? " fwd" : " bwd"));
  }
};

TEST(Tape, BackwardCallsBlockHooksInReverseBlockOrder) {
  BlockModel m(3, 8);
  Tape tape;
  tape.set_checkpointing(true);
  RecordingHooks hooks;
  tape.set_block_hooks(&hooks);
  m.step(tape, nullptr);
  std::vector<std::string> want = {"before 2 bwd", "after 2 bwd",  "before 1 bwd",
                                   "after 1 bwd",  "before 0 bwd", "after 0 bwd"};
  EXPECT_EQ(hooks.events, want);
}

TEST(Tape, EvaluationBlocksLeaveNothingOnTheTape) {
  BlockModel m(2, 8);
  Tape tape;
  tape.set_checkpointing(true);
  NoGradGuard off(tape);
  Tensor h = m.x;
  for (int i = 0; i < 2; ++i) {
    tape.block_begin(i);
    Tensor wi = tape.leaf(m.w[static_cast<size_t>(i)], m.sw[static_cast<size_t>(i)]);
    h = run1(tape, std::make_unique<MulNode>(nullptr), {h, wi});
    tape.block_end(i);
  }
  EXPECT_EQ(tape.size(), 0u);
}


// Cheap recompute with the real RMSNorm and SwiGLU nodes (f32, CPU) in an MLP-shaped block: x -> h = norm(x)
// -> g = h * a, u = h * b -> s = swiglu(g, u) -> x + s * c. The muls save h and s (as LoRA's A saves its input),
// so without cheap recompute every block keeps them until backward; with it their memory is given back at
// block_end and refilled when backward reaches the block, with the same gradients bit for bit.
struct MlpBlocks {
  int64_t n;
  std::vector<Tensor> a, b, c, w;
  std::vector<std::shared_ptr<GradSink>> sa;
  Tensor x;
  std::shared_ptr<GradSink> sx;
  MlpBlocks(int blocks, int64_t n_) : n(n_) {
    auto f32 = [&](uint32_t seed) { return random_f64({4, n / 4}, seed).to(ENG_F32); };
    for (int i = 0; i < blocks; ++i) {
      a.push_back(f32(10 + i));
      b.push_back(f32(20 + i));
      c.push_back(f32(30 + i));
      w.push_back(random_f64({n / 4}, 40 + i).to(ENG_F32));
      sa.push_back(std::make_shared<GradSink>(a.back().shape(), ENG_F32, cpu_device()));
    }
    x = f32(1);
    sx = std::make_shared<GradSink>(x.shape(), ENG_F32, cpu_device());
  }
  Tensor block(Tape& tape, int i, const Tensor& in) {
    const size_t k = static_cast<size_t>(i);
    const Tensor al = tape.leaf(a[k], sa[k]);
    const Tensor h = run1(tape, ops::make_rms_norm(1e-6), {in, w[k]});
    const Tensor g = run1(tape, ops::make_mul(), {h, al}), u = run1(tape, ops::make_mul(), {h, b[k]});
    const Tensor sw = run1(tape, ops::make_swiglu(), {g, u});
    return run1(tape, ops::make_add(), {in, run1(tape, ops::make_mul(), {sw, c[k]})});
  }
  // Forward of every block; returns the loss and the bytes the forward left allocated.
  std::pair<Tensor, int64_t> forward(Tape& tape) {
    const int64_t base = cpu_device().memory_stats().current_bytes;
    Tensor h = tape.leaf(x, sx);
    for (int i = 0; i < static_cast<int>(a.size()); ++i) {
      tape.block_begin(i);
      h = block(tape, i, h);
      tape.block_end(i);
    }
    Tensor loss = run1(tape, ops::make_sum(), {h});
    return {loss, cpu_device().memory_stats().current_bytes - base};
  }
};

TEST(Tape, CheckpointingOfCheapOpsGivesBackTheirOutputsWithBitwiseIdenticalGradients) {
  const int blocks = 6;
  const int64_t n = 1 << 14;
  MlpBlocks plain(blocks, n), cheap(blocks, n);
  Tape t_plain, t_cheap;
  t_cheap.set_recompute_cheap_ops(true);
  {  // allocate the gradient buffers first
    Tape warm;
    warm.backward(plain.forward(warm).first);
    warm.backward(cheap.forward(warm).first);
  }
  for (auto* m : {&plain, &cheap}) {
    for (auto& s : m->sa) s->zero();
    m->sx->zero();
  }
  auto [loss_plain, held_plain] = plain.forward(t_plain);
  auto [loss_cheap, held_cheap] = cheap.forward(t_cheap);
  // Each block gives back h and s: two tensors of n floats.
  const int64_t bytes = n * 4;
  EXPECT_EQ(t_cheap.evicted_bytes(), 2 * blocks * bytes);
  EXPECT_EQ(held_plain - held_cheap, 2 * blocks * bytes) << "plain " << held_plain << ", cheap " << held_cheap;
  t_plain.backward(loss_plain);
  t_cheap.backward(loss_cheap);
  EXPECT_EQ(t_cheap.last_backward_stats().nodes_recomputed, 2 * blocks);
  EXPECT_EQ(t_cheap.last_backward_stats().bytes_recomputed, 2 * blocks * bytes);
  EXPECT_EQ(t_plain.last_backward_stats().nodes_recomputed, 0);
  EXPECT_EQ(t_cheap.evicted_bytes(), 0);
  for (int i = 0; i < blocks; ++i) {
    const Tensor& ga = plain.sa[static_cast<size_t>(i)]->grad();
    const Tensor& gb = cheap.sa[static_cast<size_t>(i)]->grad();
    EXPECT_EQ(std::memcmp(ga.raw_data(), gb.raw_data(), ga.nbytes()), 0) << "block " << i;
  }
}

// A checkpointed block recomputes everything anyway: cheap recompute leaves it alone.
TEST(Tape, CheckpointingOfCheapOpsLeavesCheckpointedBlocksAlone) {
  MlpBlocks m(3, 1 << 10);
  Tape tape;
  tape.set_recompute_cheap_ops(true);
  tape.set_checkpoint_blocks(2);
  auto [loss, held] = m.forward(tape);
  EXPECT_EQ(tape.evicted_bytes(), 2 * (1 << 10) * 4);  // the last block's h and s only
  tape.backward(loss);
  EXPECT_EQ(tape.last_backward_stats().blocks_replayed, 2);
  EXPECT_EQ(tape.last_backward_stats().nodes_recomputed, 2);
}

// A value whose memory its block gave back (cheap recompute, kept-block offload): block 0 computes h = norm(x)
// and g = h * a (its output); after block_end, reading h outside the tape is refused with a message naming
// `option`, a later recorded op (g * h) gets it back first, and the gradients are the plain tape's.
void expect_value_used_after_its_block(Tape& tape, const char* option, const std::function<void()>& after_end,
                                       const std::function<void()>& after_use) {
  const int64_t n = 1 << 10;
  MlpBlocks m(1, n), ref(1, n);
  Tape plain;
  const Tensor x = tape.leaf(m.x, m.sx);
  tape.block_begin(0);
  const size_t k = 0;
  const Tensor al = tape.leaf(m.a[k], m.sa[k]);
  const Tensor h = run1(tape, ops::make_rms_norm(1e-6), {x, m.w[k]});
  const Tensor g = run1(tape, ops::make_mul(), {h, al});
  tape.block_end(0);
  after_end();
  try {
    (void)h.raw_data();
    ADD_FAILURE() << "reading a given-back value outside the tape did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(option), std::string::npos) << e.what();
  }
  (void)g.raw_data();  // the block's output stays
  const Tensor y = run1(tape, ops::make_mul(), {g, h});  // h again, after its block
  (void)h.raw_data();
  after_use();
  tape.backward(run1(tape, ops::make_sum(), {y}));
  // The same computation on a plain tape.
  const Tensor al2 = plain.leaf(ref.a[k], ref.sa[k]);
  const Tensor h2 = run1(plain, ops::make_rms_norm(1e-6), {plain.leaf(ref.x, ref.sx), ref.w[k]});
  plain.backward(run1(plain, ops::make_sum(), {run1(plain, ops::make_mul(), {run1(plain, ops::make_mul(), {h2, al2}), h2})}));
  for (const auto& [sa, sb] : {std::pair{m.sa[k], ref.sa[k]}, std::pair{m.sx, ref.sx}})
    EXPECT_EQ(std::memcmp(sa->grad().raw_data(), sb->grad().raw_data(), sa->grad().nbytes()), 0);
}

// An evicted value that a later recorded op takes as input is recomputed first (and kept from then on).
TEST(Tape, CheckpointingOfCheapOpsRefillsAValueUsedAfterItsBlock) {
  Tape tape;
  tape.set_recompute_cheap_ops(true);
  expect_value_used_after_its_block(
      tape, "train.recompute_cheap_ops", [&] { EXPECT_EQ(tape.evicted_bytes(), (1 << 10) * 4); },
      [&] { EXPECT_EQ(tape.evicted_bytes(), 0); });
}

// Kept-block offload: the first N kept blocks move what their nodes saved to host memory after their forward
// (given back at once on the CPU, whose fenced copies are synchronous) and refill it when backward reaches them,
// with the same gradients bit for bit. Per block that is h, g, u and s (and the block's input, the output of the
// block before, for every block but the first, whose input is a leaf); the block's output stays.
void expect_offload_kept(bool cheap, int64_t checkpointed) {
  const int blocks = 6, offloaded = 3;
  const int64_t n = 1 << 14, bytes = n * 4;
  MlpBlocks plain(blocks, n), off(blocks, n);
  Tape t_plain, t_off;
  for (Tape* t : {&t_plain, &t_off}) {
    t->set_recompute_cheap_ops(cheap);
    t->set_checkpoint_blocks(checkpointed);
  }
  t_off.set_offload_kept_blocks(offloaded, blocks, /*min_bytes=*/1024);
  EXPECT_EQ(t_off.offload_kept_blocks(), offloaded);
  {  // allocate the gradient buffers first
    Tape warm;
    warm.backward(plain.forward(warm).first);
    warm.backward(off.forward(warm).first);
  }
  for (int step = 0; step < 2; ++step) {  // the second step reuses the first one's pinned buffers
    for (auto* m : {&plain, &off}) {
      for (auto& s : m->sa) s->zero();
      m->sx->zero();
    }
    auto [loss_plain, held_plain] = plain.forward(t_plain);
    auto [loss_off, held_off] = off.forward(t_off);
    // Offloaded: blocks [checkpointed, checkpointed + 3); h and s already given back by cheap recompute.
    const int64_t per_block = cheap ? 2 : 4;
    const int64_t inputs = checkpointed > 0 ? offloaded : offloaded - 1;
    const int64_t moved = (offloaded * per_block + inputs) * bytes;
    EXPECT_EQ(held_plain - held_off, moved) << "plain " << held_plain << ", offloaded " << held_off;
    t_plain.backward(loss_plain);
    t_off.backward(loss_off);
    EXPECT_EQ(t_off.offloaded_kept_bytes(), moved);
    EXPECT_EQ(t_off.offloaded_bytes(), moved);
    EXPECT_EQ(t_plain.offloaded_kept_bytes(), 0);
    EXPECT_EQ(t_off.last_backward_stats().blocks_replayed, checkpointed);
    for (int i = 0; i < blocks; ++i) {
      const Tensor& ga = plain.sa[static_cast<size_t>(i)]->grad();
      const Tensor& gb = off.sa[static_cast<size_t>(i)]->grad();
      EXPECT_EQ(std::memcmp(ga.raw_data(), gb.raw_data(), ga.nbytes()), 0) << "block " << i;
    }
    EXPECT_EQ(std::memcmp(plain.sx->grad().raw_data(), off.sx->grad().raw_data(), plain.sx->grad().nbytes()), 0);
  }
}

TEST(Tape, KeptBlockOffloadGivesBitwiseIdenticalGradientsAndHoldsLessAfterTheForward) {
  expect_offload_kept(/*cheap=*/false, /*checkpointed=*/0);
}
TEST(Tape, KeptBlockOffloadWithCheapRecomputeMovesWhatIsLeft) { expect_offload_kept(true, 0); }
TEST(Tape, KeptBlockOffloadStartsAfterTheCheckpointedBlocks) { expect_offload_kept(true, 2); }

// Backward brings offloaded blocks back ahead, but no more of them at once than the blocks it has finished (not
// all at its start, where the step's memory is at its highest): with 3 of 8 blocks offloaded, backward never
// holds much more than the forward left.
TEST(Tape, KeptBlockOffloadPrefetchesNoMoreThanBackwardHasFreed) {
  const int blocks = 8;
  const int64_t n = 1 << 14, bytes = n * 4;
  MlpBlocks m(blocks, n);
  {
    Tape warm;
    warm.backward(m.forward(warm).first);
  }
  Tape tape;
  tape.set_offload_kept_blocks(3, blocks, /*min_bytes=*/1024);
  auto [loss, held] = m.forward(tape);
  Device& dev = cpu_device();
  const int64_t base = dev.memory_stats().current_bytes;
  dev.reset_peak_memory();
  tape.backward(loss);
  const int64_t rise = dev.memory_stats().peak_bytes - base;
  // Each offloaded block is 5 tensors (h, g, u, s, its input); all three at the start would be 15.
  EXPECT_LT(rise, 10 * bytes) << "backward rose " << rise / bytes << " tensors above the forward's " << held / bytes;
  EXPECT_EQ(tape.offloaded_kept_bytes(), (3 * 4 + 2) * bytes);
}

// A storage brought back from host memory is its holders' again: its memory goes when the last of them lets go
// (the node after its backward), not when the offload's tickets are dropped at the end of backward, which held
// every restored block's activations (and kept attention results) through the rest of backward.
TEST(ActivationOffload, RestoredStorageGoesWithItsLastHolder) {
  Device& dev = cpu_device();
  const int64_t n = 1 << 14, bytes = n * 8;
  ActivationOffload off(/*min_bytes=*/1024);
  Tensor t = random_f64({n}, 5);
  std::vector<double> before(static_cast<size_t>(n)), after(static_cast<size_t>(n));
  t.copy_to_host(before.data(), before.size() * 8);
  const int64_t base = dev.memory_stats().current_bytes;
  const int64_t id = off.stash_storage(t.impl()->storage);
  off.release_storage(id);
  EXPECT_EQ(dev.memory_stats().current_bytes, base - bytes);
  EXPECT_THROW((void)t.raw_data(), Error);
  off.restore_storage(id);
  EXPECT_EQ(dev.memory_stats().current_bytes, base);
  t.copy_to_host(after.data(), after.size() * 8);
  EXPECT_EQ(before, after);
  t = Tensor();
  EXPECT_EQ(dev.memory_stats().current_bytes, base - bytes) << "the offload's ticket still holds the storage";
  off.reset();
}

// An offloaded value that a later recorded op takes as input comes back first.
TEST(Tape, KeptBlockOffloadBringsBackAValueUsedAfterItsBlock) {
  Tape tape;
  tape.set_offload_kept_blocks(1, 2, /*min_bytes=*/1024);
  expect_value_used_after_its_block(tape, "train.offload_kept_blocks", [] {}, [] {});
  EXPECT_EQ(tape.offloaded_kept_bytes(), (1 << 10) * 4);  // h alone: x is a leaf, g the block's output
}

// A forward recorded and dropped (evaluation with gradients on) leaves nothing behind: an offloaded value
// somebody still holds gets its memory and values back.
TEST(Tape, KeptBlockOffloadClearedTapeGivesHeldValuesBack) {
  const int64_t n = 1 << 10;
  MlpBlocks m(2, n);
  Tape tape;
  tape.set_offload_kept_blocks(2, 2, /*min_bytes=*/1024);
  const Tensor x = tape.leaf(m.x, m.sx);
  tape.block_begin(0);
  const Tensor h = run1(tape, ops::make_rms_norm(1e-6), {x, m.w[0]});
  std::vector<float> before(static_cast<size_t>(n));
  h.copy_to_host(before.data(), before.size() * 4);
  const Tensor g = run1(tape, ops::make_mul(), {h, tape.leaf(m.a[0], m.sa[0])});
  tape.block_end(0);
  EXPECT_THROW((void)h.raw_data(), Error);
  tape.clear();
  std::vector<float> after(static_cast<size_t>(n));
  h.copy_to_host(after.data(), after.size() * 4);
  EXPECT_EQ(before, after);
  EXPECT_THROW(tape.set_offload_kept_blocks(-1, 2), Error);
}

}  // namespace
}  // namespace engine::rt
