// Recipe: a validated training recipe, every value resolved (defaults filled, --set applied, include merged,
// relative paths made absolute against the file that set them). Produced by load_recipe (recipe_loader.hpp).
// The section and key names are the recipe reference in README.md; recipe_sections.cpp is the table of them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/plugins/plugin_registry.hpp"

namespace engine::recipe {

// A plugin chosen for a slot, with its section as the JSON object handed to the plugin's create()
// (every key of the section except `plugin`, plugin defaults filled in).
struct PluginChoice {
  std::string plugin;  // empty: the optional section is absent
  std::string options_json = "{}";
  const plugins::PluginRecord* record = nullptr;  // valid while the registry lives

  bool present() const noexcept { return !plugin.empty(); }
};

struct ModelSection : PluginChoice {
  std::filesystem::path path;  // Hugging Face model folder (a Hub id's snapshot once resolve_hub_sources ran)
  std::string hub_id;          // model.path as written when it is a Hub id (org/name[@rev]) and no local path
  std::string dtype;           // storage dtype of frozen weights: bf16 | fp32 | fp16
  std::string init_preset;     // "" | tiny | small: `engine run` creates a random model at `path` if absent
  double init_std = 0.0;       // with init_preset: the created model's initializer_range (0: the preset's)
};

struct OptimizerSection : PluginChoice {
  double lr = 0.0;
  double weight_decay = 0.0;
};

struct ParallelSection : PluginChoice {
  double timeout_s = 600.0;  // collective timeout (also without a [parallel] section, for world size > 1)
};

struct SchedulerSection {
  std::string kind;  // constant | linear | cosine
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;  // of the total steps; used when warmup_steps is 0
  double min_lr = 0.0;
};

// One entry of data.train / data.eval: "path", "path#N", "org/name[@rev][#N]", or a table
// {source = "...", count = N} / {source = "...", weight = w} (engine/data/data_sources.hpp says how).
struct DataSourceSpec {
  std::string text;            // as written, for messages
  std::filesystem::path path;  // a local file or folder (absolute); a Hub dataset's file once resolved
  std::string hub_id;          // org/name[@rev] when the source is a Hub dataset id (and no local path)
  int64_t count = -1;          // samples to take (-1: all)
  double weight = 0.0;         // > 0: round(weight * size) samples
};

struct DataSection {
  std::vector<DataSourceSpec> train;
  std::vector<DataSourceSpec> eval;  // empty: no evaluation set
  std::string format;          // auto | alpaca | messages | text
  int64_t max_seq_len = 0;
  bool packing = false;
  std::string chat_template;  // auto (from tokenizer_config.json) | chatml | llama3 | none
  std::string system_prompt;
  bool train_on_prompt = false;
  std::string truncation;  // truncate | drop
  std::string on_error;    // fail | skip
};

struct TrainSection {
  std::filesystem::path output_dir;
  int64_t micro_batch_size = 0;
  int64_t grad_accum = 0;
  int64_t max_steps = 0;  // 0: run `epochs` epochs
  int64_t epochs = 0;
  double grad_clip = 0.0;  // 0: no clipping
  int64_t seed = 0;
  std::string device;  // cpu | cuda | auto
  // train.activation_checkpointing: true (every block), false, N (the first N blocks) or "auto" (the fewest
  // blocks whose recompute lets the memory plan fit train.max_memory, decided when the run starts).
  bool activation_checkpointing = false;  // some block may be recomputed (checkpoint_blocks != 0 or auto)
  int64_t checkpoint_blocks = 0;          // blocks recomputed in backward, counted from the first; -1: all
  bool checkpoint_auto = false;
  // train.offload_activations: checkpointed blocks keep their inputs in pinned host memory (CUDA).
  bool offload_activations = false;
  // train.offload_kept_blocks: the first N blocks that keep their activations move them to pinned host memory
  // after their forward and get them back ahead of their backward (CUDA; rt::Tape::set_offload_kept_blocks).
  int64_t offload_kept_blocks = 0;
  // train.recompute_cheap_ops: blocks that keep their activations give back the outputs of RMSNorm and SwiGLU
  // after the forward and recompute them when backward reaches them (rt::Tape::set_recompute_cheap_ops).
  bool recompute_cheap_ops = false;
  // train.keep_attention: checkpointed blocks keep their attention's output and statistics, so that their replay
  // skips the attention forward (rt::Tape::set_replay_memo; with offload_activations in pinned host memory).
  bool keep_attention = false;
  // train.deterministic: false lets CUDA kernels with a faster non-deterministic variant use it (cuDNN's
  // attention backward); refused on the CPU, whose kernels are all deterministic.
  bool deterministic = true;
  double max_memory_gib = 0.0;  // train.max_memory: GiB the run may use on the device (0: all of it)
  std::string dtype;       // fp32 | bf16 (compute)
  int64_t eval_every = 0;  // 0: never
  int64_t max_nonfinite_steps = 0;
};

struct CheckpointSection {
  int64_t save_every = 0;  // 0: only at the end
  int64_t keep_last = 0;   // 0: keep all
};

struct LogSection {
  int64_t every = 0;
  bool tensorboard = false;  // event files under <output_dir>/runs/ (engine/train/tensorboard_writer.hpp)
};

struct Recipe {
  std::filesystem::path source;  // the recipe file given on the command line (absolute)
  ModelSection model;
  PluginChoice quantizer;
  PluginChoice peft;
  OptimizerSection optimizer;
  SchedulerSection scheduler;
  ParallelSection parallel;
  DataSection data;
  TrainSection train;
  CheckpointSection checkpoint;
  LogSection log;
  // Every section as resolved ({"model": {...}, ...}), for `engine validate` and "the recipe as run".
  nlohmann::json resolved;
};

}  // namespace engine::recipe
