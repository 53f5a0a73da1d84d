// bench_train_step_cpu: how close a CPU training step of a llama-shaped stack gets to the machine's sgemm
// rate.
//
// What it runs: embedding -> 8 x [RMSNorm, q/k/v projections, RoPE, causal attention, o projection, residual,
// RMSNorm, gate/up projections, SwiGLU, down projection, residual] -> RMSNorm -> fused linear + cross-entropy
// over a 32000-token vocabulary; hidden 512, 8 heads (head_dim 64), intermediate 1408, batch 1, sequence 256,
// f32. The graph is built directly from the op nodes (engine/runtime/ops) with a minimal tape in this file;
// the backward computes gradients for every weight.
//
// What it reports: step time (best and median of --steps after one warm-up), model FLOPs per step
//   6 * (parameters in matmuls) * tokens + attention (QK^T and PV over the causal half: 3 x forward)
// and the achieved GFLOP/s, next to OpenBLAS sgemm GFLOP/s measured in the same run on exactly the GEMM
// shapes of the step's matmuls (forward, input gradient and weight gradient of every projection and the LM
// head), and the ratio of the two. Also a per-op time breakdown. Prints a table and writes JSON (--json
// PATH).
//
// Run: ENGINE_NUM_THREADS=<cores> build/bin/bench_train_step_cpu [--steps N] [--layers L] [--json out.json]
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/runtime/ops/ops.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/thread_pool.hpp"

using engine::rt::Dims;
using engine::rt::Node;
using engine::rt::Tensor;
namespace ops = engine::rt::ops;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Config {
  int64_t hidden = 512, layers = 8, heads = 8, kv_heads = 8, intermediate = 1408, seq = 256, batch = 1,
          vocab = 32000;
  int steps = 5;
  std::string json = "bench_train_step_cpu.json";
};

Tensor random_weight(const Dims& shape, double scale, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, static_cast<float>(scale));
  std::vector<float> v(static_cast<size_t>(shape.numel()));
  for (float& x : v) x = dist(rng);
  return Tensor::from_vector(shape, ENG_F32, engine::rt::cpu_device(), v);
}

// A minimal tape: values by id; each entry is a node with its input and output ids. Backward walks entries in
// reverse and sums gradients that reach one value from several consumers.
class Tape {
 public:
  int leaf(const Tensor& t, bool trainable) {
    values_.push_back(t);
    trainable_.push_back(trainable);
    return static_cast<int>(values_.size()) - 1;
  }
  const Tensor& value(int id) const { return values_[static_cast<size_t>(id)]; }

  int run(std::unique_ptr<Node> node, std::vector<int> inputs) {
    std::vector<Tensor> in;
    for (int id : inputs) in.push_back(id >= 0 ? value(id) : Tensor());
    const auto t0 = Clock::now();
    std::vector<Tensor> out = node->forward(in, true);
    fwd_time_[node->name()] += seconds_since(t0);
    const int id = leaf(out[0], false);
    entries_.push_back({std::move(node), std::move(inputs), id});
    return id;
  }

  // Gradients of every trainable leaf, by id.
  std::map<int, Tensor> backward(int loss) {
    std::map<int, Tensor> grad;
    std::map<int, bool> owned;
    grad[loss] = Tensor::full(Dims{}, ENG_F32, engine::rt::cpu_device(), 1.0);
    for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
      auto g = grad.find(it->output);
      if (g == grad.end()) continue;
      std::vector<bool> needs;
      for (int id : it->inputs) needs.push_back(id >= 0 && needs_grad(id));
      const auto t0 = Clock::now();
      std::vector<Tensor> gin = it->node->backward({g->second}, needs);
      it->node->release_saved();
      grad.erase(g);
      for (size_t i = 0; i < gin.size(); ++i) {
        if (!gin[i].defined() || !needs[i]) continue;
        const int id = it->inputs[i];
        auto e = grad.find(id);
        if (e == grad.end()) {
          grad[id] = gin[i];
          owned[id] = false;
        } else {
          if (!owned[id]) {  // the stored gradient may alias another node's buffer: accumulate into a copy
            e->second = e->second.contiguous().clone();
            owned[id] = true;
          }
          ops::axpby_(e->second, 1.0, gin[i], 1.0);
        }
      }
      bwd_time_[it->node->name()] += seconds_since(t0);
    }
    std::map<int, Tensor> out;
    for (auto& [id, t] : grad)
      if (trainable_[static_cast<size_t>(id)]) out[id] = t;
    return out;
  }

  void clear() {
    entries_.clear();
    values_.resize(static_cast<size_t>(n_params_));
    trainable_.resize(static_cast<size_t>(n_params_));
  }
  void freeze_leaves() { n_params_ = static_cast<int>(values_.size()); }
  std::map<std::string, double>& fwd_time() { return fwd_time_; }
  std::map<std::string, double>& bwd_time() { return bwd_time_; }

 private:
  bool needs_grad(int id) const {
    // Values produced by an op need gradients when anything upstream is trainable; in this model every
    // produced value does. Leaves need them when trainable.
    return id >= n_params_ || trainable_[static_cast<size_t>(id)];
  }
  struct Entry {
    std::unique_ptr<Node> node;
    std::vector<int> inputs;
    int output;
  };
  std::vector<Tensor> values_;
  std::vector<bool> trainable_;
  std::vector<Entry> entries_;
  int n_params_ = 0;
  std::map<std::string, double> fwd_time_, bwd_time_;
};

struct Layer {
  int attn_norm, wq, wk, wv, wo, mlp_norm, wg, wu, wd;
};

struct Model {
  int embed, final_norm, lm_head, ids, labels, positions;
  std::vector<Layer> layers;
};

Model build_params(Tape& tape, const Config& c) {
  Model m;
  uint64_t seed = 1;
  const double s = 0.02;
  const int64_t hd = c.hidden / c.heads;
  m.embed = tape.leaf(random_weight({c.vocab, c.hidden}, s, seed++), true);
  for (int64_t l = 0; l < c.layers; ++l) {
    Layer L;
    L.attn_norm = tape.leaf(Tensor::full({c.hidden}, ENG_F32, engine::rt::cpu_device(), 1.0), true);
    L.wq = tape.leaf(random_weight({c.heads * hd, c.hidden}, s, seed++), true);
    L.wk = tape.leaf(random_weight({c.kv_heads * hd, c.hidden}, s, seed++), true);
    L.wv = tape.leaf(random_weight({c.kv_heads * hd, c.hidden}, s, seed++), true);
    L.wo = tape.leaf(random_weight({c.hidden, c.heads * hd}, s, seed++), true);
    L.mlp_norm = tape.leaf(Tensor::full({c.hidden}, ENG_F32, engine::rt::cpu_device(), 1.0), true);
    L.wg = tape.leaf(random_weight({c.intermediate, c.hidden}, s, seed++), true);
    L.wu = tape.leaf(random_weight({c.intermediate, c.hidden}, s, seed++), true);
    L.wd = tape.leaf(random_weight({c.hidden, c.intermediate}, s, seed++), true);
    m.layers.push_back(L);
  }
  m.final_norm = tape.leaf(Tensor::full({c.hidden}, ENG_F32, engine::rt::cpu_device(), 1.0), true);
  m.lm_head = tape.leaf(random_weight({c.vocab, c.hidden}, s, seed++), true);
  std::mt19937_64 rng(7);
  std::vector<int32_t> ids(static_cast<size_t>(c.batch * c.seq)), labels(ids.size()), pos(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>(rng() % static_cast<uint64_t>(c.vocab));
    pos[i] = static_cast<int32_t>(i % static_cast<size_t>(c.seq));
  }
  for (size_t i = 0; i < ids.size(); ++i) labels[i] = i + 1 < ids.size() ? ids[i + 1] : -100;
  auto& dev = engine::rt::cpu_device();
  m.ids = tape.leaf(Tensor::from_vector({c.batch, c.seq}, ENG_I32, dev, ids), false);
  m.labels = tape.leaf(Tensor::from_vector({c.batch * c.seq}, ENG_I32, dev, labels), false);
  m.positions = tape.leaf(Tensor::from_vector({c.batch, c.seq}, ENG_I32, dev, pos), false);
  tape.freeze_leaves();
  return m;
}

int forward(Tape& t, const Model& m, const Config& c) {
  const int64_t hd = c.hidden / c.heads, N = c.batch * c.seq;
  eng_rope_config rope{};
  rope.struct_size = sizeof(rope);
  rope.theta = 10000.0;
  rope.rotary_dim = static_cast<int32_t>(hd);
  rope.scaling = ENG_ROPE_NONE;
  auto reshape = [&](int x, std::vector<int64_t> shape) {
    return t.run(ops::make_reshape(static_cast<int>(shape.size()), shape.data()), {x});
  };
  int x = t.run(ops::make_embedding(), {m.embed, m.ids});  // (B, T, C)
  for (const Layer& L : m.layers) {
    const int h = t.run(ops::make_rms_norm(1e-6), {x, L.attn_norm});
    int q =
        reshape(t.run(ops::make_linear(), {h, L.wq, -1}), {c.batch, c.seq, c.heads, hd});  // (B, T, Hq, D)
    int k = reshape(t.run(ops::make_linear(), {h, L.wk, -1}),
                    {c.batch, c.seq, c.kv_heads, hd});  // (B, T, Hkv, D)
    const int v = reshape(t.run(ops::make_linear(), {h, L.wv, -1}), {c.batch, c.seq, c.kv_heads, hd});
    q = t.run(ops::make_rope(rope), {q, m.positions});
    k = t.run(ops::make_rope(rope), {k, m.positions});
    const int a = t.run(ops::make_attention(1.0 / std::sqrt(static_cast<double>(hd))), {q, k, v, -1});
    const int o = t.run(ops::make_linear(), {reshape(a, {c.batch, c.seq, c.hidden}), L.wo, -1});
    x = t.run(ops::make_add(), {x, o});
    const int h2 = t.run(ops::make_rms_norm(1e-6), {x, L.mlp_norm});
    const int g = t.run(ops::make_linear(), {h2, L.wg, -1});  // (B, T, I)
    const int u = t.run(ops::make_linear(), {h2, L.wu, -1});
    const int s = t.run(ops::make_swiglu(), {g, u});
    x = t.run(ops::make_add(), {x, t.run(ops::make_linear(), {s, L.wd, -1})});
  }
  const int hf = reshape(t.run(ops::make_rms_norm(1e-6), {x, m.final_norm}), {N, c.hidden});
  return t.run(ops::make_linear_cross_entropy(-100, 1.0 / static_cast<double>(N)), {hf, m.lm_head, m.labels});
}

struct GemmShape {
  bool ta, tb;
  int64_t M, N, K;
  int count;
};

// The step's GEMMs: for each weight (out, in) applied to N rows: forward (N, out, in) NT, input gradient
// (N, in, out) NN, weight gradient (out, in, N) TN.
std::vector<GemmShape> step_gemms(const Config& c) {
  const int64_t N = c.batch * c.seq, hd = c.hidden / c.heads;
  std::vector<std::pair<std::pair<int64_t, int64_t>, int>> weights = {
      {{c.heads * hd, c.hidden}, static_cast<int>(c.layers)},
      {{c.kv_heads * hd, c.hidden}, static_cast<int>(2 * c.layers)},
      {{c.hidden, c.heads * hd}, static_cast<int>(c.layers)},
      {{c.intermediate, c.hidden}, static_cast<int>(2 * c.layers)},
      {{c.hidden, c.intermediate}, static_cast<int>(c.layers)},
      {{c.vocab, c.hidden}, 1}};
  std::vector<GemmShape> g;
  for (auto& [w, count] : weights) {
    const int64_t out = w.first, in = w.second;
    g.push_back({false, true, N, out, in, count});
    g.push_back({false, false, N, in, out, count});
    g.push_back({true, false, out, in, N, count});
  }
  return g;
}

// Seconds for one pass over the step's GEMMs through cblas_sgemm (best of `reps`).
double time_sgemm(const std::vector<GemmShape>& shapes, int reps) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    double total = 0;
    for (const GemmShape& s : shapes) {
      const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
      std::vector<float> A(static_cast<size_t>(s.M * s.K), 0.5f), B(static_cast<size_t>(s.K * s.N), 0.25f),
          C(static_cast<size_t>(s.M * s.N));
      engine::cpu::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(),
                               s.N);
      const auto t0 = Clock::now();
      for (int i = 0; i < s.count; ++i)
        engine::cpu::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f,
                                 C.data(), s.N);
      total += seconds_since(t0);
    }
    best = std::min(best, total);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--steps")
      c.steps = std::stoi(next());
    else if (a == "--layers")
      c.layers = std::stoll(next());
    else if (a == "--seq")
      c.seq = std::stoll(next());
    else if (a == "--json")
      c.json = next();
    else {
      std::fprintf(stderr, "unknown option %s (known: --steps N, --layers L, --seq T, --json PATH)\n",
                   a.c_str());
      return 2;
    }
  }
  const int threads = engine::rt::cpu_device().thread_pool()->size();
  Tape tape;
  const Model m = build_params(tape, c);

  // Model FLOPs per step.
  const int64_t hd = c.hidden / c.heads, N = c.batch * c.seq;
  const double matmul_params =
      static_cast<double>(c.layers) *
          static_cast<double>(c.hidden * (c.heads * hd) * 2 + c.hidden * (c.kv_heads * hd) * 2 +
                              3 * c.hidden * c.intermediate) +
      static_cast<double>(c.vocab * c.hidden);
  const double causal_pairs = static_cast<double>(c.seq) * static_cast<double>(c.seq + 1) / 2.0;
  const double attn_flops = 3.0 * 4.0 * causal_pairs * static_cast<double>(hd * c.heads * c.batch * c.layers);
  const double matmul_flops = 6.0 * matmul_params * static_cast<double>(N);
  const double step_flops = matmul_flops + attn_flops;

  // sgemm on the step's shapes, same process, same OpenBLAS threads: one pass after every step, so both see
  // the same machine load.
  const auto shapes = step_gemms(c);
  std::vector<double> times, sgemm_times;
  double loss = 0;
  for (int s = 0; s <= c.steps; ++s) {
    if (s == 1) {
      tape.fwd_time().clear();
      tape.bwd_time().clear();
    }
    const auto t0 = Clock::now();
    const int l = forward(tape, m, c);
    loss = tape.value(l).item();
    const auto grads = tape.backward(l);
    const double dt = seconds_since(t0);
    if (grads.size() != static_cast<size_t>(2 + 9 * c.layers + 1)) {
      std::fprintf(stderr, "expected gradients for every weight, got %zu\n", grads.size());
      return 1;
    }
    tape.clear();
    const double sg = time_sgemm(shapes, 1);
    if (s > 0) {  // step 0 warms caches and OpenBLAS buffers
      times.push_back(dt);
      sgemm_times.push_back(sg);
    }
  }
  std::sort(times.begin(), times.end());
  std::sort(sgemm_times.begin(), sgemm_times.end());
  // Best of the runs: on a shared machine the minimum is the least disturbed measurement of each.
  const double step_s = times.front(), step_median_s = times[times.size() / 2];
  const double sgemm_s = sgemm_times.front(), sgemm_median_s = sgemm_times[sgemm_times.size() / 2];
  const double step_gflops = step_flops / step_s / 1e9, sgemm_gflops = matmul_flops / sgemm_s / 1e9;
  const double ratio = step_gflops / sgemm_gflops;
  const double ratio_median = (step_flops / step_median_s) / (matmul_flops / sgemm_median_s);

  std::printf(
      "CPU training step: llama-shaped, hidden %lld, %lld layers, %lld heads, intermediate %lld, seq %lld, "
      "batch %lld, vocab %lld (fused linear+CE), f32, %d threads\n",
      (long long)c.hidden, (long long)c.layers, (long long)c.heads, (long long)c.intermediate,
      (long long)c.seq, (long long)c.batch, (long long)c.vocab, threads);
  std::printf("%-34s %12s\n", "metric", "value");
  std::printf("%-34s %12.2f\n", "step time (ms, best)", step_s * 1e3);
  std::printf("%-34s %12.2f\n", "step time (ms, median)", step_median_s * 1e3);
  std::printf("%-34s %12.2f\n", "model GFLOP per step", step_flops / 1e9);
  std::printf("%-34s %12.2f\n", "  of which attention", attn_flops / 1e9);
  std::printf("%-34s %12.2f\n", "step GFLOP/s", step_gflops);
  std::printf("%-34s %12.2f\n", "sgemm GFLOP/s (same shapes)", sgemm_gflops);
  std::printf("%-34s %11.1f%%\n", "step / sgemm (best / best)", 100.0 * ratio);
  std::printf("%-34s %11.1f%%\n", "step / sgemm (median / median)", 100.0 * ratio_median);
  std::printf("%-34s %12.4f\n", "loss", loss);
  std::printf("\n%-22s %12s %12s %8s\n", "op (per step)", "forward ms", "backward ms", "share");
  double total = 0;
  std::map<std::string, std::pair<double, double>> per_op;
  for (auto& [k, v] : tape.fwd_time()) per_op[k].first = v / c.steps * 1e3;
  for (auto& [k, v] : tape.bwd_time()) per_op[k].second = v / c.steps * 1e3;
  for (auto& [k, v] : per_op) total += v.first + v.second;
  nlohmann::json ops_json = nlohmann::json::object();
  for (auto& [k, v] : per_op) {
    std::printf("%-22s %12.2f %12.2f %7.1f%%\n", k.c_str(), v.first, v.second,
                100.0 * (v.first + v.second) / total);
    ops_json[k] = {{"forward_ms", v.first}, {"backward_ms", v.second}};
  }
  std::vector<double> step_ms, sgemm_ms;
  for (double t : times) step_ms.push_back(t * 1e3);
  for (double t : sgemm_times) sgemm_ms.push_back(t * 1e3);
  nlohmann::json j = {{"benchmark", "train_step_cpu"},
                      {"config",
                       {{"hidden", c.hidden},
                        {"layers", c.layers},
                        {"heads", c.heads},
                        {"kv_heads", c.kv_heads},
                        {"intermediate", c.intermediate},
                        {"seq", c.seq},
                        {"batch", c.batch},
                        {"vocab", c.vocab},
                        {"dtype", "f32"},
                        {"threads", threads},
                        {"steps", c.steps}}},
                      {"step_ms_best", step_s * 1e3},
                      {"step_ms_median", step_median_s * 1e3},
                      {"step_ms_all", step_ms},
                      {"sgemm_ms_all", sgemm_ms},
                      {"model_gflop_per_step", step_flops / 1e9},
                      {"attention_gflop_per_step", attn_flops / 1e9},
                      {"step_gflops", step_gflops},
                      {"sgemm_gflops_same_shapes", sgemm_gflops},
                      {"ratio", ratio},
                      {"ratio_median", ratio_median},
                      {"loss", loss},
                      {"ops", ops_json}};
  std::ofstream(c.json) << j.dump(2) << "\n";
  std::printf("\nwrote %s\n", c.json.c_str());
  return 0;
}
