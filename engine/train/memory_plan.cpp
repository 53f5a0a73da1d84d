#include "engine/train/memory_plan.hpp"

#include <algorithm>
#include <cmath>

#include <spdlog/fmt/fmt.h>

#include "engine/core/error.hpp"

namespace engine::train {
namespace {

int64_t dtype_bytes(eng_dtype d) {
  switch (d) {
    case ENG_F32: return 4;
    case ENG_BF16:
    case ENG_F16: return 2;
    case ENG_F64: return 8;
    default: return 4;
  }
}

struct LinearShape {
  std::string name;
  int64_t out = 0;
  int64_t in = 0;
};

std::vector<LinearShape> block_linears(const PlanModelShape& m) {
  const int64_t q = int64_t(m.n_heads) * m.head_dim;
  const int64_t kv = int64_t(m.n_kv_heads) * m.head_dim;
  return {{"q_proj", q, m.hidden_size},           {"k_proj", kv, m.hidden_size},
          {"v_proj", kv, m.hidden_size},          {"o_proj", m.hidden_size, q},
          {"gate_proj", m.intermediate_size, m.hidden_size}, {"up_proj", m.intermediate_size, m.hidden_size},
          {"down_proj", m.hidden_size, m.intermediate_size}};
}

bool targeted(const PlanInputs& in, const std::string& name) {
  return in.lora_targets.count("all-linear") != 0 || in.lora_targets.count(name) != 0;
}

}  // namespace

const std::vector<std::string>& block_linear_names() {
  static const std::vector<std::string> names = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

// Per token and block, what the ops of a llama/qwen2 block keep for backward (elements):
//   rms_norm x2          its input (C) and the normalised output the next linear keeps (C)
//   q, k, v              their outputs (Hq*D + 2*Hkv*D), reshaped views share storage
//   rope on q, k         the rotated outputs the attention keeps (Hq*D + Hkv*D)
//   attention            its output (Hq*D) plus the softmax statistics (Hq)
//   o_proj, residual     the output (C) and the residual sum (C)
//   mlp                  gate, up, swiglu output (3*I), down's output (C), the residual sum (C)
//   LoRA per target      x @ A^T (r) and the dropout mask / scaled copy (r)
int64_t activation_elements_per_token(const PlanInputs& in) {
  const PlanModelShape& m = in.model;
  const int64_t c = m.hidden_size;
  const int64_t q = int64_t(m.n_heads) * m.head_dim;
  const int64_t kv = int64_t(m.n_kv_heads) * m.head_dim;
  const int64_t i = m.intermediate_size;
  int64_t e = 2 * c + 2 * c;         // two norms: input and output
  e += q + 2 * kv;                   // projections
  e += q + kv;                       // rope
  e += q + m.n_heads;                // attention output and row statistics
  e += 2 * c;                        // o_proj output, residual
  e += 3 * i + 2 * c;                // mlp
  if (in.lora_rank > 0) {
    for (const auto& l : block_linears(m)) {
      if (targeted(in, l.name)) e += 2 * in.lora_rank + l.out;  // A-projection, scaled, and the sum's output
    }
  }
  return e;
}

MemoryPlan make_memory_plan(const PlanInputs& in) {
  const PlanModelShape& m = in.model;
  if (m.n_layers <= 0 || m.hidden_size <= 0 || m.vocab_size <= 0 || m.head_dim <= 0 || m.n_heads <= 0) {
    fail("the memory plan needs the model's sizes (layers, hidden size, vocabulary, heads); got layers={} "
         "hidden={} vocab={} heads={} head_dim={}",
         m.n_layers, m.hidden_size, m.vocab_size, m.n_heads, m.head_dim);
  }
  MemoryPlan plan;
  plan.device_memory = in.device_memory;
  const bool full = in.lora_rank <= 0;
  const int64_t wbytes = dtype_bytes(in.weight_dtype);
  const int64_t abytes = dtype_bytes(in.compute_dtype);

  // Base parameters.
  int64_t linear_elems = 0, other_elems = 0, adapter_elems = 0;
  for (const auto& l : block_linears(m)) {
    linear_elems += l.out * l.in;
    if (!full && targeted(in, l.name)) adapter_elems += in.lora_rank * (l.out + l.in);
  }
  linear_elems *= m.n_layers;
  adapter_elems *= m.n_layers;
  int64_t per_block_other = 2 * m.hidden_size;  // two norms
  if (m.attention_bias) per_block_other += int64_t(m.n_heads + 2 * m.n_kv_heads) * m.head_dim;
  other_elems = per_block_other * m.n_layers + m.hidden_size /* final norm */ + m.vocab_size * m.hidden_size;
  if (!m.tie_word_embeddings) other_elems += m.vocab_size * m.hidden_size;
  plan.base_elements = linear_elems + other_elems;

  int64_t base_bytes = 0, scale_bytes = 0;
  if (in.quant_bytes_per_element > 0.0) {
    base_bytes = static_cast<int64_t>(std::ceil(linear_elems * in.quant_bytes_per_element)) + other_elems * wbytes;
    scale_bytes = static_cast<int64_t>(std::ceil(linear_elems * in.quant_scale_bytes_per_element));
  } else {
    base_bytes = plan.base_elements * wbytes;
  }
  plan.components.push_back({"base weights", base_bytes,
                             fmt::format("{} elements, {} B each{}", plan.base_elements, wbytes,
                                         in.quant_bytes_per_element > 0 ? " (projections quantized)" : "")});
  plan.components.push_back({"quant scales", scale_bytes, in.quant_bytes_per_element > 0 ? "per-block scales" : "none"});

  plan.trainable_elements = full ? plan.base_elements : adapter_elems;
  plan.components.push_back({"adapters", adapter_elems * 4,
                             full ? "none (full fine-tuning)" : fmt::format("LoRA r={}, {} elements fp32", in.lora_rank, adapter_elems)});
  const int64_t master = (full && wbytes < 4) ? plan.trainable_elements * 4 : 0;
  plan.components.push_back({"master weights", master, master > 0 ? "fp32 copies of trainable weights" : "none"});
  plan.components.push_back({"gradients", plan.trainable_elements * 4, fmt::format("{} trainable elements fp32", plan.trainable_elements)});
  plan.components.push_back({"optimizer state",
                             static_cast<int64_t>(std::ceil(plan.trainable_elements * in.optimizer_state_bytes_per_element)),
                             fmt::format("{} B per trainable element", in.optimizer_state_bytes_per_element)});

  // Activations.
  const int64_t tokens = in.micro_batch_size * in.seq_len;
  const int64_t per_block = activation_elements_per_token(in) * tokens;
  int64_t act_elems = 0;
  std::string act_detail;
  if (in.activation_checkpointing) {
    act_elems = int64_t(m.n_layers) * m.hidden_size * tokens + per_block;
    act_detail = fmt::format("checkpointed: block inputs of {} blocks + one block recomputed, {} tokens", m.n_layers, tokens);
  } else {
    act_elems = int64_t(m.n_layers) * per_block;
    act_detail = fmt::format("{} elements/token/block x {} tokens x {} blocks", activation_elements_per_token(in), tokens, m.n_layers);
  }
  act_elems += 2 * m.hidden_size * tokens;  // embedding output and the final norm's output
  plan.components.push_back({"activations", act_elems * abytes, act_detail});

  const int64_t rows = std::min<int64_t>(in.loss_chunk_rows, tokens);
  plan.components.push_back({"loss", 2 * rows * m.vocab_size * 4,
                             fmt::format("{} rows x {} vocabulary, logits and their gradient", rows, m.vocab_size)});
  // Transient backward buffers: the gradient of the largest activation flowing back through a block.
  const int64_t transient = 4 * tokens * std::max(m.hidden_size, m.intermediate_size) * abytes;
  const int64_t ws = in.cuda ? (int64_t(32) << 20) + transient : transient;
  plan.components.push_back({"workspace", ws, in.cuda ? "cuBLASLt workspace + backward buffers" : "backward buffers"});

  for (const auto& c : plan.components) plan.total_bytes += c.bytes;
  return plan;
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", v, units[u]);
}

std::string format_memory_plan(const MemoryPlan& plan, const std::string& device_name) {
  std::string out = fmt::format("memory plan for {}\n", device_name);
  for (const auto& c : plan.components) {
    out += fmt::format("  {:<16} {:>12}   {}\n", c.name, format_bytes(c.bytes), c.detail);
  }
  out += fmt::format("  {:<16} {:>12}", "total", format_bytes(plan.total_bytes));
  if (plan.device_memory > 0) {
    out += fmt::format("   of {} ({:.1f}%){}", format_bytes(plan.device_memory),
                       100.0 * static_cast<double>(plan.total_bytes) / static_cast<double>(plan.device_memory),
                       plan.fits() ? "" : "  DOES NOT FIT");
  }
  out += "\n";
  return out;
}

}  // namespace engine::train
