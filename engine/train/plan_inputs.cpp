#include "engine/train/plan_inputs.hpp"

#include <algorithm>

#include "engine/core/error.hpp"

namespace engine::train {

namespace {

int64_t need(const nlohmann::json& c, const char* key) {
  if (!c.contains(key) || !c[key].is_number_integer())
    fail("config.json has no integer '{}' (needed for the memory plan)", key);
  return c[key].get<int64_t>();
}

// An optional boolean of config.json: `fallback` when absent or null, an error naming the key when it holds
// another type (json::value would throw a bare type_error).
bool flag(const nlohmann::json& c, const char* key, bool fallback) {
  if (!c.contains(key) || c[key].is_null()) return fallback;
  if (!c[key].is_boolean()) fail("config.json: '{}' must be true or false, got {}", key, c[key].dump());
  return c[key].get<bool>();
}

}  // namespace

PlanModelShape plan_shape_from_config(const nlohmann::json& c) {
  PlanModelShape m;
  m.n_layers = static_cast<int32_t>(need(c, "num_hidden_layers"));
  m.vocab_size = need(c, "vocab_size");
  m.hidden_size = need(c, "hidden_size");
  m.intermediate_size = need(c, "intermediate_size");
  m.n_heads = static_cast<int32_t>(need(c, "num_attention_heads"));
  m.n_kv_heads = c.contains("num_key_value_heads") && c["num_key_value_heads"].is_number_integer()
                     ? c["num_key_value_heads"].get<int32_t>()
                     : m.n_heads;
  m.head_dim = c.contains("head_dim") && c["head_dim"].is_number_integer()
                   ? c["head_dim"].get<int32_t>()
                   : static_cast<int32_t>(m.hidden_size / m.n_heads);
  m.tie_word_embeddings = flag(c, "tie_word_embeddings", false);
  const std::string type = c.contains("model_type") && c["model_type"].is_string() ? c["model_type"].get<std::string>()
                                                                                  : std::string();
  m.attention_bias = type == "qwen2" ? true : flag(c, "attention_bias", false);
  return m;
}

int64_t auto_checkpoint_blocks(const PlanInputs& in) {
  // Headroom for what the plan does not see: the caching allocator's rounding and fragmentation, the CUDA
  // context and library workspaces.
  const int64_t budget = static_cast<int64_t>(0.92 * double(in.device_memory));
  const int64_t n = fewest_checkpoint_blocks(in, budget);
  if (n >= 0) return n;
  // Nothing fits: the least memory the plan knows, every block recomputed, reached by fewer of them. The last
  // block keeping its activations costs nothing (they are the height its replay would have at backward's start),
  // so it need not recompute (Qwen2.5-7B at micro-batch 4 under Unsloth's 17.28 GiB: 27 of 28, measured at the
  // same peak as 28 on an H200, bench/RESULTS.md).
  PlanInputs all = in;
  all.activation_checkpointing = true;
  all.checkpoint_blocks = -1;
  const int64_t least = fewest_checkpoint_blocks(in, make_memory_plan(all).total_bytes);
  return least < 0 || least >= in.model.n_layers ? -1 : least;
}

int64_t auto_offload_kept_blocks(const PlanInputs& in) {
  PlanInputs t = in;
  for (int64_t k = 0; k < in.offload_kept_blocks; ++k) {
    t.offload_kept_blocks = k;
    if (auto_checkpoint_blocks(t) == in.checkpoint_blocks) return k;
  }
  return in.offload_kept_blocks;
}

PlanInputs plan_inputs_for(const recipe::Recipe& r, const nlohmann::json& config, double optimizer_bytes,
                           double quant_bytes, bool cuda, int64_t device_memory) {
  PlanInputs in;
  in.model = plan_shape_from_config(config);
  const std::string& d = r.model.dtype;
  in.weight_dtype = d == "bf16" ? ENG_BF16 : d == "fp16" ? ENG_F16 : ENG_F32;
  in.compute_dtype = (cuda && r.train.dtype == "bf16") ? ENG_BF16 : ENG_F32;
  if (r.peft.present()) {
    const nlohmann::json o = nlohmann::json::parse(r.peft.options_json);
    in.lora_rank = o.value("r", int64_t{8});
    const nlohmann::json t =
        o.contains("target_modules") ? o["target_modules"] : nlohmann::json("all-linear");
    if (t.is_string()) {
      in.lora_targets.insert(t.get<std::string>() == "all-linear" ? "all-linear" : t.get<std::string>());
    } else if (t.is_array()) {
      for (const auto& x : t) in.lora_targets.insert(x.get<std::string>());
    }
    if (in.lora_rank < 1) in.lora_rank = 1;
  }
  if (quant_bytes > 0) {
    in.quant_bytes_per_element = quant_bytes;  // scales included
    in.quant_scale_bytes_per_element = 0.0;
  }
  in.optimizer_state_bytes_per_element = optimizer_bytes;
  in.micro_batch_size = r.train.micro_batch_size;
  in.seq_len = r.data.max_seq_len;
  in.activation_checkpointing = r.train.activation_checkpointing;
  in.checkpoint_blocks = r.train.checkpoint_blocks;
  in.grad_accum = r.train.grad_accum;
  in.offload_activations = r.train.offload_activations;
  in.offload_kept_blocks = r.train.offload_kept_blocks;
  in.recompute_cheap_ops = r.train.recompute_cheap_ops;
  in.keep_attention = r.train.keep_attention;
  if (r.train.max_memory_gib > 0) {
    const auto cap = static_cast<int64_t>(r.train.max_memory_gib * double(int64_t(1) << 30));
    device_memory = device_memory > 0 ? std::min(device_memory, cap) : cap;
  }
  if (r.train.checkpoint_auto && device_memory > 0) {
    in.device_memory = device_memory;
    in.checkpoint_blocks = auto_checkpoint_blocks(in);
    if (in.offload_kept_blocks > 0) in.offload_kept_blocks = auto_offload_kept_blocks(in);
  }
  in.cuda = cuda;
  in.device_memory = device_memory;
  return in;
}

}  // namespace engine::train
