#include "engine/recipe/recipe_sections.hpp"

namespace engine::recipe {

namespace {

using nlohmann::json;

FieldSpec field(std::string name, FieldType type, std::optional<json> def, std::string help,
                std::vector<json> allowed = {}, std::optional<double> min = std::nullopt,
                std::optional<double> max = std::nullopt) {
  FieldSpec f;
  f.name = std::move(name);
  f.type = type;
  f.required = !def.has_value();
  f.default_value = std::move(def);
  f.description = std::move(help);
  f.enum_values = std::move(allowed);
  f.minimum = min;
  f.maximum = max;
  return f;
}

FieldSpec plugin_field(const char* kind) {
  return field("plugin", FieldType::kString, std::nullopt, std::string("name of the ") + kind + " plugin");
}

constexpr auto S = FieldType::kString;
constexpr auto I = FieldType::kInteger;
constexpr auto N = FieldType::kNumber;
constexpr auto B = FieldType::kBoolean;

std::vector<SectionSpec> build() {
  return {
      {"model",
       ENG_KIND_MODEL,
       true,
       {plugin_field("model"),
        field("path", S, std::nullopt,
              "Hugging Face model folder (config.json, *.safetensors, tokenizer.json), or a Hub id org/name[@revision]"),
        field("dtype", S, "bf16", "storage dtype of the frozen base weights", {"bf16", "fp32", "fp16"}),
        field("init_preset", S, "",
              "create a randomly initialised model of the plugin's preset at model.path when it does not exist",
              {"", "tiny", "small"}),
        field("init_std", N, 0.0, "with init_preset: the created model's initializer_range (0: the preset's)", {},
              0.0)},
       {"path"}},
      {"quantizer", ENG_KIND_QUANTIZER, false, {plugin_field("quantizer")}, {}},
      {"peft", ENG_KIND_PEFT, false, {plugin_field("peft")}, {}},
      {"optimizer",
       ENG_KIND_OPTIMIZER,
       true,
       {plugin_field("optimizer"), field("lr", N, std::nullopt, "peak learning rate", {}, 0.0),
        field("weight_decay", N, 0.0, "decoupled weight decay (not applied to biases and norms)", {}, 0.0)},
       {}},
      {"scheduler",
       std::nullopt,
       false,
       {field("kind", S, "constant", "learning-rate schedule after warmup", {"constant", "linear", "cosine"}),
        field("warmup_steps", I, 0, "linear warmup steps from 0 to lr", {}, 0.0),
        field("warmup_ratio", N, 0.0, "warmup as a fraction of all steps (when warmup_steps is 0)", {}, 0.0,
              1.0),
        field("min_lr", N, 0.0, "learning rate at the end of linear/cosine decay", {}, 0.0)},
       {}},
      {"parallel",
       ENG_KIND_PARALLEL,
       false,
       {plugin_field("parallel"),
        field("timeout_s", N, 600.0,
              "a collective that does not finish within this many seconds ends the run on every rank, naming "
              "the operation, the step and the missing rank",
              {}, 1.0)},
       {}},
      {"data",
       std::nullopt,
       true,
       {field("train", FieldType::kAny, std::nullopt,
              "training set: a JSON, JSONL or CSV file or folder, or a Hub dataset id org/name[@revision]; "
              "name#N takes N samples; or a list of them, entries also {source, count} or {source, weight}"),
        field("eval", FieldType::kAny, "", "evaluation set, as data.train (empty: none)"),
        field("format", S, "auto", "sample format", {"auto", "alpaca", "messages", "text", "tokens"}),
        field("max_seq_len", I, 2048, "tokens per row (a label needs a next token: at least 2)", {}, 2.0,
              static_cast<double>(kMaxSeqLen)),
        field("packing", B, false, "pack several samples per row (attention never crosses samples)"),
        field("chat_template", S, "auto", "chat template (auto: from tokenizer_config.json)",
              {"auto", "chatml", "llama3", "none"}),
        field("system_prompt", S, "", "system prompt added to chat samples that have none"),
        field("train_on_prompt", B, false,
              "also train on prompt tokens (default: only responses carry labels)"),
        field("truncation", S, "truncate", "over-long samples without packing", {"truncate", "drop"}),
        field("on_error", S, "fail", "a malformed sample", {"fail", "skip"})},
       {"train", "eval"}},
      {"train",
       std::nullopt,
       true,
       {field("output_dir", S, std::nullopt, "where checkpoints and metrics.jsonl go"),
        field("micro_batch_size", I, 1, "rows per forward pass", {}, 1.0),
        field("grad_accum", I, 1, "micro-batches per optimizer step", {}, 1.0),
        field("max_steps", I, 0, "optimizer steps (0: run `epochs` epochs)", {}, 0.0),
        field("epochs", I, 1, "passes over the training set when max_steps is 0", {}, 1.0),
        field("grad_clip", N, 1.0, "clip the global gradient norm to this (0: no clipping)", {}, 0.0),
        field("seed", I, 42, "seed of every random generator", {}, 0.0),
        field("device", S, "auto", "where to train", {"cpu", "cuda", "auto"}),
        field("activation_checkpointing", FieldType::kAny, false,
              "recompute blocks' activations in backward: true (every block), false, a number N (the first N "
              "blocks) or \"auto\" (the fewest blocks that let the memory plan fit train.max_memory)"),
        field("offload_activations", B, false,
              "keep the inputs of checkpointed blocks in pinned host memory instead of GPU memory, copied out "
              "during the forward and back ahead of each replay (CUDA; needs activation_checkpointing)"),
        field("offload_kept_blocks", I, 0,
              "the first N blocks that keep their activations (the ones right after the checkpointed blocks) "
              "move them to pinned host memory during the forward and get them back, prefetched, before backward "
              "reaches them: their memory without their recompute, as fast as the host link drains them (CUDA; "
              "activation_checkpointing = \"auto\" then recomputes fewer blocks)",
              {}, 0.0),
        field("recompute_cheap_ops", B, false,
              "blocks that keep their activations give back the outputs of their norms and SwiGLU after the "
              "forward and recompute them (elementwise work) when backward reaches the block: about a third "
              "less memory per kept block, the same gradients; activation_checkpointing = \"auto\" then "
              "recomputes fewer blocks"),
        field("keep_attention", B, false,
              "checkpointed blocks keep their attention's output and softmax statistics (2 x hidden bytes a token "
              "in bf16; with offload_activations in pinned host memory, like the blocks' inputs), so that "
              "backward's replay of a block skips the attention forward, whose work grows with tokens squared: "
              "the same gradients, faster at long context (needs activation_checkpointing)"),
        field("deterministic", B, true,
              "bitwise repeatable kernels (true); false lets CUDA attention's backward use cuDNN's faster "
              "non-deterministic algorithm, whose workspace grows with the tokens instead of tokens squared x "
              "heads (long context); losses then vary in the last bits and a resume is not bit-exact. CUDA only"),
        field("max_memory", N, 0.0,
              "GiB of device memory the run may use (0: the device's); activation_checkpointing = \"auto\" "
              "plans against it",
              {}, 0.0),
        field("dtype", S, "fp32", "compute dtype", {"fp32", "bf16"}),
        field("eval_every", I, 0, "evaluate on data.eval every N steps (0: never)", {}, 0.0),
        field("max_nonfinite_steps", I, 10, "stop after this many non-finite steps in a row", {}, 1.0)},
       {"output_dir"}},
      {"checkpoint",
       std::nullopt,
       false,
       {field("save_every", I, 0, "save every N steps (0: only at the end)", {}, 0.0),
        field("keep_last", I, 0, "keep the newest N checkpoints (0: all)", {}, 0.0)},
       {}},
      {"log",
       std::nullopt,
       false,
       {field("every", I, 1, "log metrics every N steps", {}, 1.0),
        field("tensorboard", B, false,
              "also write the metrics as TensorBoard event files under <output_dir>/runs/ (tensorboard --logdir)")},
       {}},
  };
}

}  // namespace

const std::vector<SectionSpec>& recipe_sections() {
  static const std::vector<SectionSpec> sections = build();
  return sections;
}

const SectionSpec* find_section(const std::string& name) {
  for (const SectionSpec& s : recipe_sections()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

}  // namespace engine::recipe
