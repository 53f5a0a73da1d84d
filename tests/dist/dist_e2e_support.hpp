// What the distributed end-to-end tests share (ddp_e2e_test, sharded_e2e_test, sharded_cuda_test): the `engine run` arguments of a
// tiny job with a global batch of 6 rows, its per-step losses, the loss and weight comparisons, and the
// per-rank memory line the trainer prints after the last step.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "engine/io/safetensors.hpp"

#include "tests/e2e/e2e_support.hpp"

namespace engine::e2e {

inline constexpr int kSteps = 20;
inline constexpr int kGlobalRows = 6;

struct Job {
  std::string recipe;    // tiny_lora, tiny_full or tiny_qlora
  std::string weights;   // adapter_model.safetensors or model.safetensors
};

inline const Job kLora{"tiny_lora", "adapter_model.safetensors"};
inline const Job kFull{"tiny_full", "model.safetensors"};
inline const Job kQLora{"tiny_qlora", "adapter_model.safetensors"};

inline std::vector<std::string> run_args(const Job& job, const fs::path& model, const fs::path& out, int world,
                                  std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"run",
                                (source_dir() / "recipes" / (job.recipe + ".toml")).string(),
                                "--set", "model.path=" + model.string(),
                                "--set", "train.output_dir=" + out.string(),
                                "--set", "train.max_steps=" + std::to_string(kSteps),
                                "--set", "train.micro_batch_size=" + std::to_string(kGlobalRows / world),
                                "--set", "train.grad_accum=1",
                                "--set", "checkpoint.save_every=10",
                                "--set", "checkpoint.keep_last=0",
                                "--set", "train.eval_every=0",
                                "--set", "data.eval=",
                                "--set", "log.every=1"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

inline std::vector<std::string> launched(std::vector<std::string> args, int world) {
  args.insert(args.begin() + 1, {"--nproc-per-node", std::to_string(world)});
  return args;
}

inline std::vector<double> losses(const fs::path& out) {
  std::vector<double> v;
  for (const auto& [step, j] : train_lines(out)) v.push_back(j["loss"].get<double>());
  return v;
}

inline void expect_close_losses(const std::vector<double>& a, const std::vector<double>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double rel = std::abs(a[i] - b[i]) / std::abs(a[i]);
    worst = std::max(worst, rel);
    EXPECT_LT(rel, 1e-5) << what << ": step " << i + 1 << " " << a[i] << " vs " << b[i];
  }
  std::cout << what << ": worst relative loss difference " << worst << "\n";
}

// Every tensor of two safetensors files: the same names and shapes, values within `tol` of each other
// relative to the tensor's largest magnitude. k_proj.bias is held to the file's largest magnitude instead:
// its gradient is zero in exact arithmetic (softmax ignores a constant added to every key of a query), so
// its fp32 gradient is rounding noise that AdamW normalises into full-size steps, and two summation orders
// give different noise.
inline void expect_close_weights(const fs::path& a, const fs::path& b, const std::string& what, double tol = 1e-4) {
  ASSERT_TRUE(fs::exists(a)) << a;
  ASSERT_TRUE(fs::exists(b)) << b;
  io::SafetensorsFile fa = io::SafetensorsFile::open(a), fb = io::SafetensorsFile::open(b);
  ASSERT_EQ(fa.tensors().size(), fb.tensors().size()) << what;
  double file_scale = 0;
  for (const io::SafetensorsTensor& ta : fa.tensors()) {
    std::vector<float> va(ta.nbytes / 4);
    std::memcpy(va.data(), ta.data, ta.nbytes);
    for (float x : va) file_scale = std::max(file_scale, double(std::abs(x)));
  }
  double worst = 0;
  for (const io::SafetensorsTensor& ta : fa.tensors()) {
    auto tb = fb.find(ta.name);
    ASSERT_TRUE(tb.has_value()) << what << ": " << ta.name << " missing";
    ASSERT_EQ(ta.dtype_name, "F32");
    ASSERT_EQ(ta.nbytes, tb->nbytes) << ta.name;
    const size_t n = ta.nbytes / 4;
    std::vector<float> va(n), vb(n);
    std::memcpy(va.data(), ta.data, ta.nbytes);
    std::memcpy(vb.data(), tb->data, tb->nbytes);
    const bool zero_gradient = std::string_view(ta.name).ends_with("k_proj.bias");
    double scale = zero_gradient ? file_scale : 1e-12, diff = 0;
    for (size_t i = 0; i < n; ++i) {
      scale = std::max(scale, double(std::abs(va[i])));
      diff = std::max(diff, double(std::abs(va[i] - vb[i])));
    }
    worst = std::max(worst, diff / scale);
    EXPECT_LT(diff / scale, tol) << what << ": " << ta.name;
  }
  std::cout << what << ": worst relative weight difference " << worst << "\n";
}

// `engine export --merged` (fp32) of dir/<a>/checkpoint-20 and of dir/<b>/checkpoint-20: the same weights.
inline void expect_same_export(const fs::path& dir, const std::string& a, const std::string& b, const std::string& what) {
  for (const std::string& which : {a, b}) {
    const fs::path log = dir / ("export_" + which + ".log");
    ASSERT_EQ(run_engine({"export", "--checkpoint", (dir / which / "checkpoint-20").string(), "--merged", "--out",
                          (dir / ("export_" + which)).string(), "--dtype", "fp32"},
                         log),
              0)
        << read_file(log);
  }
  expect_close_weights(dir / ("export_" + a) / "model.safetensors", dir / ("export_" + b) / "model.safetensors", what);
}

// The "rank R: after the last step the allocator holds X bytes; gradients G bytes, optimizer state O bytes;
// parameters P bytes" lines of a log, by rank.
struct Held {
  double allocator = 0;  // X
  double grads_and_state = 0;  // G + O
  double params = 0;  // P: what the rank keeps of the parameters at rest
};
inline std::map<int, Held> held_bytes_of(const std::string& log) {
  std::map<int, Held> out;
  const std::string key = "after the last step the allocator holds ";
  for (size_t p = log.find(key); p != std::string::npos; p = log.find(key, p + 1)) {
    const size_t r = log.rfind("rank ", p - 3);
    const int rank = std::atoi(log.c_str() + r + 5);
    double x = 0, g = 0, o = 0, w = 0;
    std::sscanf(log.c_str() + p + key.size(), "%lf bytes; gradients %lf bytes, optimizer state %lf bytes; parameters %lf",
                &x, &g, &o, &w);
    out[rank] = {x, g + o, w};
  }
  return out;
}

// By rank: {X, G + O} (ddp_e2e_test's form).
inline std::map<int, std::pair<double, double>> held_bytes(const std::string& log) {
  std::map<int, std::pair<double, double>> out;
  for (const auto& [rank, h] : held_bytes_of(log)) out[rank] = {h.allocator, h.grads_and_state};
  return out;
}

// A 4-block variant of the tiny model (engine init-model --config; pp: four stages of one block each), made in
// dir/model4.
inline fs::path four_block_model(const fs::path& dir) {
  const fs::path model = dir / "model4";
  std::string config = read_file(source_dir() / "plugins/qwen2/presets/tiny.json");
  for (const std::string key : {"\"num_hidden_layers\": ", "\"max_window_layers\": "}) {
    const size_t at = config.find(key + "2");
    EXPECT_NE(at, std::string::npos) << key;
    if (at == std::string::npos) continue;
    config = config.substr(0, at) + key + "4" + config.substr(at + key.size() + 1);
  }
  const fs::path file = dir / "config4.json";
  std::ofstream(file) << config;
  const fs::path log = dir / "init4.log";
  EXPECT_EQ(run_engine({"init-model", "--arch", "qwen2", "--config", file.string(), "--dtype", "f32", "--out",
                        model.string()},
                       log),
            0)
      << read_file(log);
  return model;
}

}  // namespace engine::e2e
