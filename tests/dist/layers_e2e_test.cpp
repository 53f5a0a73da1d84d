// Layer placement (plugins/layers: device_map-style model parallelism in one process) over simulated CPU
// devices, through the `engine` binary:
//   - tiny_lora and tiny_full with their 2 blocks on 2 devices give the per-step losses of the plain run
//     (relative difference below 1e-5 over 20 steps) and its final weights; the second device holds a part
//     of the memory, measured by its own allocator;
//   - a 4-block model on 4 devices with activation checkpointing and 4 micro-batches per step, explicit blocks
//     [3, 1] and a sequential placement under a memory budget: the plain run's losses and weights;
//   - evaluation runs through the devices, a checkpoint of a 2-device run resumes on one device and the other
//     way round with the uninterrupted run's remaining losses;
//   - what cannot be placed is refused by name.
#include <fstream>

#include "tests/dist/dist_e2e_support.hpp"

namespace engine::e2e {
namespace {

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<std::string> on_devices(int n, std::vector<std::string> extra = {}) {
  return with({"--set", "parallel.plugin=layers", "--set", "parallel.devices=" + std::to_string(n)}, extra);
}

std::string run_ok(const fs::path& dir, const std::string& name, std::vector<std::string> args) {
  const fs::path log = dir / (name + ".log");
  const int code = run_engine(std::move(args), log);
  EXPECT_EQ(code, 0) << read_file(log);
  return read_file(log);
}

// "layers: device cpu:K holds X bytes after the last step, P bytes at its peak", by device.
std::map<int, std::pair<double, double>> device_bytes(const std::string& log) {
  std::map<int, std::pair<double, double>> out;
  const std::string key = "layers: device cpu:";
  for (size_t p = log.find(key); p != std::string::npos; p = log.find(key, p + 1)) {
    int k = 0;
    double x = 0, peak = 0;
    if (std::sscanf(log.c_str() + p + key.size(), "%d holds %lf bytes after the last step, %lf", &k, &x, &peak) == 3)
      out[k] = {x, peak};
  }
  return out;
}

void two_devices(const Job& job) {
  const fs::path dir = fresh_dir("layers_" + job.recipe);
  const fs::path model = dir / "model";
  const fs::path plain = dir / "plain";
  run_ok(dir, "plain", run_args(job, model, plain, 1));
  const std::vector<double> ref = losses(plain);
  ASSERT_EQ(ref.size(), size_t(kSteps));
  const fs::path out = dir / "layers2";
  const std::string text = run_ok(dir, "layers2", run_args(job, model, out, 1, on_devices(2)));
  // The tied embedding (the lm_head) stays on device 0 with the first block: the loss is computed there.
  EXPECT_NE(text.find("layers: 2 devices (simulated CPU devices): blocks [0, 1) on cpu:0, [1, 2) on cpu:1; the loss "
                      "on cpu:0"),
            std::string::npos)
      << text;
  expect_close_losses(ref, losses(out), job.recipe + " layers over 2 devices");
  expect_close_weights(plain / "checkpoint-20" / job.weights, out / "checkpoint-20" / job.weights,
                       job.recipe + " layers over 2 devices");
  // The second device's allocator holds its block (weights, gradients, optimizer state) and its activations:
  // a real part of the whole, not everything.
  const std::map<int, std::pair<double, double>> bytes = device_bytes(text);
  ASSERT_EQ(bytes.size(), 2u) << text;
  const double held1 = bytes.at(1).first, total = bytes.at(0).first + bytes.at(1).first;
  std::cout << job.recipe << " layers over 2 devices: device 1 holds " << held1 << " of " << total
            << " bytes after the last step (peaks " << bytes.at(0).second << ", " << bytes.at(1).second << ")\n";
  EXPECT_GT(held1, 0.1 * total);
  EXPECT_LT(held1, 0.9 * total);
}

TEST(Layers, TinyLoraOnTwoSimulatedDevicesMatchesThePlainRun) { two_devices(kLora); }

TEST(Layers, TinyFullOnTwoSimulatedDevicesMatchesThePlainRun) { two_devices(kFull); }


TEST(Layers, FourBlocksOnFourTwoAndSequentialDevicesWithCheckpointingMatchThePlainRun) {
  const fs::path dir = fresh_dir("layers_four");
  const fs::path model = four_block_model(dir);
  const std::vector<std::string> accum = {"--set", "train.micro_batch_size=2", "--set", "train.grad_accum=4",
                                          "--set", "train.activation_checkpointing=true"};
  const fs::path plain = dir / "plain";
  run_ok(dir, "plain", run_args(kFull, model, plain, 1, accum));
  const std::vector<double> ref = losses(plain);
  ASSERT_EQ(ref.size(), size_t(kSteps));
  struct Case {
    std::string name;
    std::vector<std::string> args;
    std::string placed;
  };
  for (const Case& c : std::vector<Case>{
           {"four", on_devices(4), "blocks [0, 1) on cpu:0, [1, 2) on cpu:1, [2, 3) on cpu:2, [3, 4) on cpu:3"},
           {"blocks", {"--set", "parallel.plugin=layers", "--set", "parallel.blocks=[3, 1]"},
            "blocks [0, 3) on cpu:0, [3, 4) on cpu:1"},
           // Each block of the 4-block tiny_full model rests in 0.71 MiB (46,352 f32 weights, their gradient and
           // two moments), the tied embedding (512 x 64) in 0.5 MiB more: under 1.5 MiB a device, device 0 takes
           // the embedding and one block, device 1 two blocks, device 2 the last one.
           {"sequential",
            on_devices(3, {"--set", "parallel.placement=sequential", "--set", "parallel.max_memory_gib=0.00146"}),
            "blocks [0, 1) on cpu:0, [1, 3) on cpu:1, [3, 4) on cpu:2"}}) {
    const fs::path out = dir / c.name;
    const std::string text = run_ok(dir, c.name, run_args(kFull, model, out, 1, with(accum, c.args)));
    const std::string& placed = c.placed;
    EXPECT_NE(text.find(placed), std::string::npos) << text;
    expect_close_losses(ref, losses(out), "tiny_full (4 blocks) layers " + c.name);
    expect_close_weights(plain / "checkpoint-20" / kFull.weights, out / "checkpoint-20" / kFull.weights,
                         "tiny_full (4 blocks) layers " + c.name);
  }
}

TEST(Layers, EvaluationAndResumeAcrossDeviceCountsMatchThePlainRun) {
  const fs::path dir = fresh_dir("layers_resume");
  const fs::path model = dir / "model";
  const std::vector<std::string> eval = {"--set", "data.eval=" + (source_dir() / "data/tiny/eval.jsonl").string(),
                                         "--set", "train.eval_every=10"};
  const fs::path straight = dir / "straight", two = dir / "two";
  run_ok(dir, "straight", run_args(kLora, model, straight, 1, eval));
  run_ok(dir, "two", run_args(kLora, model, two, 1, with(eval, on_devices(2))));
  auto eval_losses = [](const fs::path& out) {
    std::vector<double> v;
    for (const auto& j : read_metrics(out))
      if (j.contains("eval_loss")) v.push_back(j["eval_loss"].get<double>());
    return v;
  };
  const std::vector<double> ea = eval_losses(straight), eb = eval_losses(two);
  ASSERT_EQ(ea.size(), 2u);
  expect_close_losses(ea, eb, "tiny_lora eval loss over 2 devices");
  const std::vector<double> ref = losses(straight);
  // A 2-device checkpoint on 1 device, a 1-device checkpoint on 2 devices.
  for (const auto& [name, from, extra] :
       std::vector<std::tuple<std::string, fs::path, std::vector<std::string>>>{{"on_one", two, {}},
                                                                                {"on_two", straight, on_devices(2)}}) {
    const fs::path out = dir / name;
    const std::string text = run_ok(
        dir, name, run_args(kLora, model, out, 1, with({"--resume", (from / "checkpoint-10").string()}, extra)));
    EXPECT_NE(text.find("resumed from"), std::string::npos) << text;
    expect_close_losses(std::vector<double>(ref.begin() + 10, ref.end()), losses(out), "resumed " + name);
    expect_close_weights(straight / "checkpoint-20" / kLora.weights, out / "checkpoint-20" / kLora.weights,
                         "resumed " + name);
  }
}

TEST(Layers, WhatCannotBePlacedIsRefusedByName) {
  const fs::path dir = fresh_dir("layers_refused");
  const fs::path model = dir / "model";
  run_ok(dir, "plain", run_args(kLora, model, dir / "plain", 1, {"--set", "train.max_steps=1"}));
  auto refused = [&](const std::string& name, std::vector<std::string> args, const std::string& message) {
    const fs::path log = dir / (name + ".log");
    EXPECT_NE(run_engine(std::move(args), log), 0) << name;
    EXPECT_NE(read_file(log).find(message), std::string::npos) << name << ":\n" << read_file(log);
  };
  refused("count", run_args(kLora, model, dir / "count", 1, {"--set", "parallel.plugin=layers"}),
          "layers: on the CPU the devices are simulated; say how many with parallel.devices");
  refused("three", run_args(kLora, model, dir / "three", 1, on_devices(3)),
          "layers: 3 devices need at least as many decoder blocks; the model has 2");
  refused("blocks", run_args(kLora, model, dir / "blocks", 1, {"--set", "parallel.plugin=layers", "--set", "parallel.blocks=[1, 2]"}),
          "layers: blocks add up to 3 blocks, the model has 2");
  refused("placement", run_args(kLora, model, dir / "placement", 1, on_devices(2, {"--set", "parallel.placement=auto"})),
          "parallel.placement must be one of: balanced, sequential; got 'auto'");
  refused("fits", run_args(kLora, model, dir / "fits", 1,
                           on_devices(2, {"--set", "parallel.placement=sequential", "--set", "parallel.max_memory_gib=0.0001"})),
          "layers: the model's parameters do not fit 2 devices");
  refused("world", launched(run_args(kLora, model, dir / "world", 2, on_devices(2)), 2),
          "layers: places one process's model on its devices, but the job has 2 processes");
  {
    const fs::path log = dir / "qlora.log";
    EXPECT_EQ(run_engine({"validate", (source_dir() / "recipes/tiny_qlora.toml").string(), "--set",
                          "parallel.plugin=layers"},
                         log),
              2);
    EXPECT_NE(read_file(log).find("parallel strategy 'layers' cannot handle quantized base weights"),
              std::string::npos)
        << read_file(log);
  }
}

}  // namespace
}  // namespace engine::e2e
