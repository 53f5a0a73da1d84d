// bench_train_step_cpu: how close a CPU training step through the real engine path gets to the machine's
// sgemm rate.
//
// What it runs: the llama model plugin (plugins/llama, loaded through the plugin registry like `engine train`
// does) created by session::ModelInstance from a config (hidden 512, 8 layers, 8 heads, 8 kv heads, head_dim
// 64, intermediate 1408, vocab 32000, untied LM head), parameters materialised from their declared random
// init in a host::HostSession, every parameter trainable (full fine-tuning, fp32). One step = the plugin's
// forward on (batch 1, seq 256) tokens recorded on the session's rt::Tape, ModelInstance::loss (the fused
// linear + cross-entropy through the host table), HostSession::tape().backward(loss) (gradients accumulate in
// the parameter store), ParamStore::zero_grads(). No optimizer step.
//
// Rows (each its own CpuDevice + HostSession, run interleaved step by step so all rows see the same machine
// load): the CPU device without a cache (every block from / back to the OS, as before the caching allocator),
// with the caching allocator (huge pages off, then on), and with the cache and activation checkpointing
// (--rows picks: nocache, cache, cache_huge, cache_ckpt, cache_huge_ckpt).
//
// What it reports per row: step time (best and median of --steps after one warm-up step), minor page faults
// per step, model FLOPs per step
//   6 * (parameters in matmuls, LM head included) * tokens + attention (QK^T and PV over the causal half,
//   3 x forward)
// (not counted: the fused loss's recompute of each chunk's logits in backward, 2 * N * V * C = 8.4 GFLOP, and
// the replayed forward under checkpointing), the achieved GFLOP/s, next to OpenBLAS sgemm GFLOP/s measured in
// the same run right after each step on exactly the GEMM shapes of the step's matmuls (forward, input
// gradient and weight gradient of every projection and of the LM head), and the ratio. Prints a table and
// writes JSON (--json PATH).
//
// Run: build/bin/bench_train_step_cpu [--steps N] [--layers L] [--seq T] [--rows a,b,..] [--json out.json]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/host/host_api.hpp"
#include "engine/host/host_session.hpp"
#include "engine/plugins/plugin_registry.hpp"
#include "engine/plugins/plugin_search_path.hpp"
#include "engine/runtime/device.hpp"
#include "engine/session/model_loader.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/thread_pool.hpp"

using engine::rt::Dims;
using engine::rt::Tensor;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// User + system CPU seconds of the process (all threads): on a shared machine, the work a step costs
// independently of how long other processes kept its threads waiting.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Config {
  int64_t hidden = 512, layers = 8, heads = 8, kv_heads = 8, intermediate = 1408, seq = 256, batch = 1,
          vocab = 32000;
  int steps = 5;
  std::string rows = "nocache,cache,cache_huge,cache_ckpt";
  std::string json = "bench_train_step_cpu.json";
};

std::string llama_config(const Config& c) {
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
                      {"model_type", "llama"},
                      {"hidden_act", "silu"},
                      {"hidden_size", c.hidden},
                      {"intermediate_size", c.intermediate},
                      {"num_hidden_layers", c.layers},
                      {"num_attention_heads", c.heads},
                      {"num_key_value_heads", c.kv_heads},
                      {"head_dim", c.hidden / c.heads},
                      {"vocab_size", c.vocab},
                      {"max_position_embeddings", 4096},
                      {"rms_norm_eps", 1e-6},
                      {"rope_theta", 10000.0},
                      {"tie_word_embeddings", false},
                      {"attention_bias", false},
                      {"attention_dropout", 0.0},
                      {"mlp_bias", false},
                      {"torch_dtype", "float32"}};
  return j.dump();
}

// One benchmarked configuration: its own device (allocator options), session and model.
struct Row {
  std::string name, description;
  bool checkpointing = false;
  std::unique_ptr<engine::rt::CpuDevice> device;
  std::unique_ptr<engine::host::HostSession> session;
  std::unique_ptr<engine::session::ModelInstance> model;
  Tensor ids, positions, labels;
  int64_t label_tokens = 0;
  std::vector<double> step_s, sgemm_s, forward_s, loss_s, backward_s, cpu_s;
  std::vector<long> faults;
  double loss = 0;
};

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

// Seconds for one pass over the step's GEMMs through the engine's sgemm (OpenBLAS), buffers warmed first.
double time_sgemm(const std::vector<GemmShape>& shapes) {
  double total = 0;
  for (const GemmShape& s : shapes) {
    const int64_t lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    std::vector<float> A(static_cast<size_t>(s.M * s.K), 0.5f), B(static_cast<size_t>(s.K * s.N), 0.25f),
        C(static_cast<size_t>(s.M * s.N));
    engine::cpu::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(),
                             s.N);
    const auto t0 = Clock::now();
    for (int i = 0; i < s.count; ++i)
      engine::cpu::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(),
                               s.N);
    total += seconds_since(t0);
  }
  return total;
}

Row make_row(const std::string& name, const Config& c, const engine::plugins::PluginRegistry& registry,
             int threads) {
  Row r;
  r.name = name;
  // The environment's options (ENGINE_CPU_CACHE_BYTES sets the cap of the cache rows), then the row's.
  engine::rt::CpuAllocatorOptions o = engine::rt::CpuAllocatorOptions::from_environment();
  if (name == "nocache") {
    o.cache_limit_bytes = 0;
    o.hugepages = false;
    r.description = "no cache (OS alloc/free per block)";
  } else if (name == "cache") {
    o.hugepages = false;
    r.description = "caching allocator";
  } else if (name == "cache_huge") {
    o.hugepages = true;
    r.description = "caching allocator + MADV_HUGEPAGE";
  } else if (name == "cache_huge_ckpt") {
    o.hugepages = true;
    r.checkpointing = true;
    r.description = "cache + hugepages + act. checkpointing";
  } else if (name == "cache_ckpt") {
    o.hugepages = false;
    r.checkpointing = true;
    r.description = "caching allocator + act. checkpointing";
  } else {
    std::fprintf(stderr,
                 "unknown row '%s' (known: nocache, cache, cache_huge, cache_ckpt, cache_huge_ckpt)\n",
                 name.c_str());
    std::exit(2);
  }
  r.device = std::make_unique<engine::rt::CpuDevice>(threads, o);
  r.session = std::make_unique<engine::host::HostSession>(*r.device, 1234);
  r.model = std::make_unique<engine::session::ModelInstance>(
      *r.session, registry.require(ENG_KIND_MODEL, "llama"), llama_config(c), R"({"dtype": "float32"})");
  engine::rt::ParamStore& params = r.session->params();
  params.materialize_all();
  if (params.numel(true) != params.numel()) {
    std::fprintf(stderr, "expected every parameter trainable (full fine-tuning)\n");
    std::exit(1);
  }
  r.session->tape().set_checkpointing(r.checkpointing);
  std::mt19937_64 rng(7);
  const int64_t n = c.batch * c.seq;
  std::vector<int32_t> ids(static_cast<size_t>(n)), labels(ids.size()), pos(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int32_t>(rng() % static_cast<uint64_t>(c.vocab));
    pos[i] = static_cast<int32_t>(static_cast<int64_t>(i) % c.seq);
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    labels[i] = pos[i] + 1 < c.seq ? ids[i + 1] : -100;
    r.label_tokens += labels[i] != -100;
  }
  r.ids = Tensor::from_vector({c.batch, c.seq}, ENG_I32, *r.device, ids);
  r.positions = Tensor::from_vector({c.batch, c.seq}, ENG_I32, *r.device, pos);
  r.labels = Tensor::from_vector({n}, ENG_I32, *r.device, labels);
  return r;
}

// One training step of the row; returns false when a gradient is missing.
bool step(Row& r, bool record) {
  const long f0 = minor_faults();
  const double c0 = cpu_seconds();
  const auto t0 = Clock::now();
  Tensor hidden = r.model->forward(r.ids, r.positions);  // (B, T, C)
  const auto t1 = Clock::now();
  Tensor loss = r.model->loss(hidden, r.labels, 1.0 / static_cast<double>(r.label_tokens));  // ()
  hidden = Tensor();
  const auto t2 = Clock::now();
  r.session->tape().backward(loss);
  const auto t3 = Clock::now();
  r.loss = loss.item();
  const long f1 = minor_faults();
  const double c1 = cpu_seconds();
  engine::rt::ParamStore& params = r.session->params();
  for (size_t i = 0; i < params.size(); ++i) {
    engine::rt::Param& p = params.at(i);
    if (!p.tied() && !params.grad(p).defined()) {
      std::fprintf(stderr, "no gradient reached %s\n", p.name().c_str());
      return false;
    }
  }
  params.zero_grads();
  if (record) {
    auto sec = [](Clock::time_point a, Clock::time_point b) {
      return std::chrono::duration<double>(b - a).count();
    };
    r.step_s.push_back(sec(t0, t3));
    r.forward_s.push_back(sec(t0, t1));
    r.loss_s.push_back(sec(t1, t2));
    r.backward_s.push_back(sec(t2, t3));
    r.faults.push_back(f1 - f0);
    r.cpu_s.push_back(c1 - c0);
  }
  return true;
}

template <typename T>
T median(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double best(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

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
    else if (a == "--rows")
      c.rows = next();
    else if (a == "--json")
      c.json = next();
    else {
      std::fprintf(stderr,
                   "unknown option %s (known: --steps N, --layers L, --seq T, --rows a,b,.. "
                   "(nocache,cache,cache_huge,cache_ckpt,cache_huge_ckpt), --json PATH)\n",
                   a.c_str());
      return 2;
    }
  }
  if (c.steps < 1) {
    std::fprintf(stderr, "--steps must be >= 1\n");
    return 2;
  }
  const int threads = engine::rt::cpu_device().thread_pool()->size();
  engine::plugins::PluginRegistry registry(engine::host::host_api());
  registry.load_search_path(engine::plugins::default_plugin_search_path());

  std::vector<Row> rows;
  for (size_t b = 0; b <= c.rows.size();) {
    size_t e = c.rows.find(',', b);
    if (e == std::string::npos) e = c.rows.size();
    if (e > b) rows.push_back(make_row(c.rows.substr(b, e - b), c, registry, threads));
    b = e + 1;
  }

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
  const double recompute_flops = 2.0 * static_cast<double>(N * c.vocab * c.hidden);

  // Steps interleaved across rows, each followed by one sgemm pass over the step's shapes: every row and its
  // reference see the same machine load. Step 0 of each row is a warm-up (caches, OpenBLAS buffers).
  const auto shapes = step_gemms(c);
  for (int s = 0; s <= c.steps; ++s) {
    for (Row& r : rows) {
      if (!step(r, s > 0)) return 1;
      const double sg = time_sgemm(shapes);
      if (s > 0) r.sgemm_s.push_back(sg);
    }
  }

  std::printf(
      "CPU training step through the engine (llama plugin, HostSession, rt::Tape): hidden %lld, %lld layers, "
      "%lld heads, %lld kv heads, intermediate %lld, seq %lld, batch %lld, vocab %lld (fused linear+CE), "
      "f32, "
      "%d threads, %d steps\n",
      (long long)c.hidden, (long long)c.layers, (long long)c.heads, (long long)c.kv_heads,
      (long long)c.intermediate, (long long)c.seq, (long long)c.batch, (long long)c.vocab, threads, c.steps);
  std::printf("model GFLOP per step %.2f (attention %.2f; not counted: fused-loss recompute %.2f)\n\n",
              step_flops / 1e9, attn_flops / 1e9, recompute_flops / 1e9);
  std::printf("%-40s %9s %9s %8s %8s %8s %8s %9s %9s %7s %7s %8s\n", "row", "best ms", "median ms", "cpu ms",
              "fwd ms", "loss ms", "bwd ms", "GFLOP/s", "sgemm", "ratio", "r.med", "faults");
  nlohmann::json rows_json = nlohmann::json::array();
  for (const Row& r : rows) {
    const double step_s = best(r.step_s), step_med = median(r.step_s);
    const double sg = best(r.sgemm_s), sg_med = median(r.sgemm_s);
    const double gflops = step_flops / step_s / 1e9, sgemm_gflops = matmul_flops / sg / 1e9;
    const double ratio = gflops / sgemm_gflops;
    const double ratio_median = (step_flops / step_med) / (matmul_flops / sg_med);
    const long faults = median(r.faults);
    std::printf("%-40s %9.1f %9.1f %8.1f %8.1f %8.1f %8.1f %9.2f %9.2f %6.1f%% %6.1f%% %8ld\n",
                r.description.c_str(), step_s * 1e3, step_med * 1e3, median(r.cpu_s) * 1e3,
                median(r.forward_s) * 1e3, median(r.loss_s) * 1e3, median(r.backward_s) * 1e3, gflops,
                sgemm_gflops, 100.0 * ratio, 100.0 * ratio_median, faults);
    auto ms = [](const std::vector<double>& v) {
      std::vector<double> out;
      for (double t : v) out.push_back(t * 1e3);
      return out;
    };
    const engine::rt::MemoryStats m = r.device->memory_stats();
    rows_json.push_back({{"row", r.name},
                         {"description", r.description},
                         {"activation_checkpointing", r.checkpointing},
                         {"step_ms_best", step_s * 1e3},
                         {"step_ms_median", step_med * 1e3},
                         {"process_cpu_ms_median", median(r.cpu_s) * 1e3},
                         {"forward_ms_median", median(r.forward_s) * 1e3},
                         {"loss_ms_median", median(r.loss_s) * 1e3},
                         {"backward_ms_median", median(r.backward_s) * 1e3},
                         {"step_ms_all", ms(r.step_s)},
                         {"sgemm_ms_all", ms(r.sgemm_s)},
                         {"minor_page_faults_per_step_median", faults},
                         {"step_gflops", gflops},
                         {"sgemm_gflops_same_shapes", sgemm_gflops},
                         {"ratio", ratio},
                         {"ratio_median", ratio_median},
                         {"loss", r.loss},
                         {"peak_live_bytes", m.peak_bytes},
                         {"peak_reserved_bytes", m.peak_reserved_bytes},
                         {"cache_hits", m.cache_hits},
                         {"allocations", m.allocations}});
  }
  std::printf("\n%-40s %14s %14s %12s\n", "row", "peak live MB", "peak reserved", "cache hits");
  for (const Row& r : rows) {
    const engine::rt::MemoryStats m = r.device->memory_stats();
    std::printf("%-40s %14.1f %14.1f %12lld\n", r.description.c_str(), double(m.peak_bytes) / 1e6,
                double(m.peak_reserved_bytes) / 1e6, (long long)m.cache_hits);
  }
  bool same_loss = true;
  for (const Row& r : rows) same_loss = same_loss && r.loss == rows.front().loss;
  std::printf("loss %.6f (%s across rows)\n", rows.front().loss, same_loss ? "bitwise equal" : "DIFFERS");
  nlohmann::json j = {{"benchmark", "train_step_cpu"},
                      {"path", "llama plugin + HostSession + rt::Tape, full fine-tuning, no optimizer"},
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
                      {"model_gflop_per_step", step_flops / 1e9},
                      {"attention_gflop_per_step", attn_flops / 1e9},
                      {"uncounted_fused_loss_recompute_gflop", recompute_flops / 1e9},
                      {"loss_bitwise_equal_across_rows", same_loss},
                      {"rows", rows_json}};
  std::ofstream(c.json) << j.dump(2) << "\n";
  std::printf("\nwrote %s\n", c.json.c_str());
  return 0;
}
