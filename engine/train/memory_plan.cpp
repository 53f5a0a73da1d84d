#include "engine/train/memory_plan.hpp"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <initializer_list>
#include <cmath>

#include "engine/core/error.hpp"
#include "engine/runtime/dtype.hpp"

namespace engine::train {
namespace {

// Bytes per element; an unknown dtype is an error (rt::dtype_size names it) rather than a guess.
int64_t dtype_bytes(eng_dtype d) { return static_cast<int64_t>(rt::dtype_size(d)); }

struct LinearShape {
  std::string name;
  int64_t out = 0;
  int64_t in = 0;
};

std::vector<LinearShape> block_linears(const PlanModelShape& m) {
  const int64_t q = int64_t(m.n_heads) * m.head_dim;
  const int64_t kv = int64_t(m.n_kv_heads) * m.head_dim;
  return {{"q_proj", q, m.hidden_size},
          {"k_proj", kv, m.hidden_size},
          {"v_proj", kv, m.hidden_size},
          {"o_proj", m.hidden_size, q},
          {"gate_proj", m.intermediate_size, m.hidden_size},
          {"up_proj", m.intermediate_size, m.hidden_size},
          {"down_proj", m.hidden_size, m.intermediate_size}};
}

bool targeted(const PlanInputs& in, const std::string& name) {
  return in.lora_targets.count("all-linear") != 0 || in.lora_targets.count(name) != 0;
}

}  // namespace

const std::vector<std::string>& block_linear_names() {
  static const std::vector<std::string> names = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

// Per token and block, what the autograd tape keeps for backward (elements), op by op as engine/runtime/ops
// saves them (a tensor saved by two ops, or a view of another, counts once; outputs no op saves are freed at
// once). A frozen base projection keeps only its weight (its input serves the weight's gradient alone), so a
// projection's input is saved where the projection trains (full fine-tuning) or LoRA targets it (its A saves it):
//   rms_norm x2          its input (C) and 1/rms (1); its output (C) where q/k/v (the first) or gate/up (the
//                        second) save it
//   q, k, v              the rotated q and k (Hq*D + Hkv*D) and v (Hkv*D), saved by attention; the
//                        projections' own outputs die after rope
//   attention            its output (Hq*D, the input of o_proj) and the log-sum-exp per head (Hq)
//   mlp                  gate and up (saved by swiglu) and swiglu's output where down_proj saves it: 2I or 3I
//   LoRA per target      x A^T (r), saved by the B matmul
// Outside the blocks: the final norm's input and output (2C), the loss's log-sum-exp, ids/labels/positions.
// Under tensor parallelism (tp) a rank holds its heads' and its MLP slice's activations: 1/world of q, k, v, the
// attention output and the MLP intermediates; the residual stream and the norms are whole.
static int64_t tp_parts(const PlanInputs& in) {
  if (in.strategy != "tp") return 1;
  return std::max<int64_t>(1, in.tp_size > 0 ? in.tp_size : in.world_size);
}

int64_t activation_elements_per_token(const PlanInputs& in) {
  const PlanModelShape& m = in.model;
  const int64_t tp = tp_parts(in);
  const int64_t c = m.hidden_size;
  const int64_t q = int64_t(m.n_heads) * m.head_dim / tp;
  const int64_t kv = int64_t(m.n_kv_heads) * m.head_dim / tp;
  const int64_t i = m.intermediate_size / tp;
  const bool full = in.lora_rank <= 0;
  const auto saves_input = [&](std::initializer_list<const char*> names) {
    if (full) return true;
    for (const char* n : names)
      if (targeted(in, n)) return true;
    return false;
  };
  int64_t e = 2 * (c + 1);                                        // the norms' inputs and 1/rms
  if (saves_input({"q_proj", "k_proj", "v_proj"})) e += c;        // the first norm's output
  if (saves_input({"gate_proj", "up_proj"})) e += c;              // the second's
  e += q + 2 * kv;                                                // roped q, k and v
  e += q + m.n_heads / tp;                                        // attention output and statistics
  e += 2 * i + (saves_input({"down_proj"}) ? i : 0);              // mlp
  if (in.lora_rank > 0) {
    for (const auto& l : block_linears(m)) {
      if (targeted(in, l.name)) e += in.lora_rank;
    }
  }
  return e;
}

// Per token, what is alive beyond a block's saved tensors (elements) at the height of its forward or replay
// (engine/runtime/autograd.cpp, Tape::replay: each value goes once its last consumer in the block ran): the
// summands of one projection's output that nothing saves. With LoRA on gate/up, up's base output and adapter
// output while up itself is made, before SwiGLU's output exists: I (2I alive, SwiGLU's I not yet); with LoRA on
// down_proj, its two summands and their sum after every saved tensor of the block exists: 3C; else a
// projection's output and the residual sum: 2C.
int64_t block_pending_elements_per_token(const PlanInputs& in) {
  const int64_t i = in.model.intermediate_size / tp_parts(in);
  const int64_t c = in.model.hidden_size;
  bool lora_gate_up = false, lora_down = false;
  if (in.lora_rank > 0)
    for (const auto& l : block_linears(in.model)) {
      if (!targeted(in, l.name)) continue;
      lora_gate_up = lora_gate_up || l.out == in.model.intermediate_size;
      lora_down = lora_down || l.in == in.model.intermediate_size;
    }
  return std::max(lora_gate_up ? i : 0, lora_down ? 3 * c : 2 * c);
}

namespace {

// Kept-block offload (rt::Tape::set_offload_kept_blocks): blocks [ckpt, ckpt + off) move their activations to
// host memory; after block_end(j) the tape holds at most L - 1 - j of them on the device while the kept blocks
// after them accumulate. The most blocks' activations on the device at once, by that rule.
int64_t resident_kept_blocks(int64_t L, int64_t ckpt, int64_t offload) {
  const int64_t off = std::min(std::max<int64_t>(offload, 0), std::max<int64_t>(L - ckpt, 0));
  int64_t most = 0;
  for (int64_t j = ckpt; j < L; ++j) {
    const int64_t offloaded_so_far = std::min(j - ckpt + 1, off);
    const int64_t held = std::min(offloaded_so_far, std::max<int64_t>(0, L - 1 - j));
    const int64_t kept_so_far = std::max<int64_t>(0, j - (ckpt + off) + 1);
    most = std::max(most, held + kept_so_far);
  }
  return most;
}

std::string offloaded_kept_detail(int64_t L, int64_t ckpt, int64_t offload) {
  const int64_t off = std::min(std::max<int64_t>(offload, 0), std::max<int64_t>(L - ckpt, 0));
  if (off == 0) return std::string();
  return fmt::format(" ({} of them in host memory: at most {} blocks' worth on the device)", off,
                     resident_kept_blocks(L, ckpt, offload));
}

}  // namespace

MemoryPlan make_memory_plan(const PlanInputs& in) {
  if (in.strategy == "pp" || in.strategy == "layers") {
    // Pipeline parallelism: the busiest stage's plan, as a model of its blocks with one vocabulary matrix, its
    // activations times the micro-batches it holds in flight (the first stage's: 1F1B min(stages, M), GPipe M).
    // Layer placement: the same for the busiest device, one micro-batch at a time.
    const bool layers_placement = in.strategy == "layers";
    const int64_t stages = std::max<int64_t>(1, in.pp_size > 0 ? in.pp_size : layers_placement ? 1 : in.world_size);
    PlanInputs stage = in;
    stage.strategy.clear();
    stage.world_size = 1;
    if (stages <= 1) return make_memory_plan(stage);  // one stage: the whole model on each rank
    const int64_t layers = in.model.n_layers;
    const int64_t blocks =
        in.pp_stage_blocks > 0 ? std::min<int64_t>(in.pp_stage_blocks, layers) : (layers + stages - 1) / stages;
    stage.model.n_layers = static_cast<int32_t>(std::max<int64_t>(1, blocks));
    stage.model.tie_word_embeddings = true;
    if (in.checkpoint_blocks > stage.model.n_layers) stage.checkpoint_blocks = stage.model.n_layers;
    MemoryPlan plan = make_memory_plan(stage);
    const int64_t in_flight = layers_placement ? 1
                              : in.pp_gpipe    ? std::max<int64_t>(1, in.grad_accum)
                                               : std::min<int64_t>(stages, std::max<int64_t>(1, in.grad_accum));
    for (PlanComponent& c : plan.components) {
      if (c.name == "activations" && in_flight > 1) {
        plan.total_bytes += c.bytes * (in_flight - 1);
        c.bytes *= in_flight;
        c.detail += fmt::format("; x {} micro-batches in flight ({}; an upper bound: one replays at a time)",
                                in_flight, in.pp_gpipe ? "gpipe" : "1f1b");
      }
      if (c.name == "base weights" || c.name == "master weights" || c.name == "adapters")
        c.detail += layers_placement
                        ? fmt::format(" (the busiest device: {} of {} blocks, layers over {} devices)",
                                      stage.model.n_layers, layers, stages)
                        : fmt::format(" (stage of {} of {} blocks, pp over {})", stage.model.n_layers, layers, stages);
    }
    return plan;
  }
  const PlanModelShape& m = in.model;
  if (m.n_layers <= 0 || m.hidden_size <= 0 || m.vocab_size <= 0 || m.head_dim <= 0 || m.n_heads <= 0) {
    fail(
        "the memory plan needs the model's sizes (layers, hidden size, vocabulary, heads); got layers={} "
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
  // Tensor parallelism: every block projection is split over the ranks (q, k, v, gate, up along their outputs,
  // o and down along their inputs); a LoRA adapter splits the matrix on the split side and keeps the other.
  const int64_t tp = tp_parts(in);
  if (tp > 1) {
    linear_elems /= tp;
    adapter_elems = 0;
    for (const auto& l : block_linears(m)) {
      const bool row = l.name == "o_proj" || l.name == "down_proj";
      if (!full && targeted(in, l.name)) adapter_elems += in.lora_rank * (row ? l.out + l.in / tp : l.out / tp + l.in);
    }
    adapter_elems *= m.n_layers;
  }
  int64_t per_block_other = 2 * m.hidden_size;  // two norms
  if (m.attention_bias) per_block_other += int64_t(m.n_heads + 2 * m.n_kv_heads) * m.head_dim;
  other_elems = per_block_other * m.n_layers + m.hidden_size /* final norm */ + m.vocab_size * m.hidden_size;
  if (!m.tie_word_embeddings) other_elems += m.vocab_size * m.hidden_size;
  if (tp > 1) {  // the embedding and lm_head are split over the vocabulary too, q/k/v biases with their weights
    const int64_t vocab_elems = m.vocab_size * m.hidden_size * (m.tie_word_embeddings ? 1 : 2);
    const int64_t bias_elems =
        m.attention_bias ? int64_t(m.n_heads + 2 * m.n_kv_heads) * m.head_dim * m.n_layers : 0;
    other_elems -= (vocab_elems - vocab_elems / tp) + (bias_elems - bias_elems / tp);
  }
  plan.base_elements = linear_elems + other_elems;

  int64_t base_bytes = 0, scale_bytes = 0;
  if (in.quant_bytes_per_element > 0.0) {
    base_bytes =
        static_cast<int64_t>(std::ceil(linear_elems * in.quant_bytes_per_element)) + other_elems * wbytes;
    scale_bytes = static_cast<int64_t>(std::ceil(linear_elems * in.quant_scale_bytes_per_element));
  } else if (!full) {
    base_bytes = plan.base_elements * wbytes;
  }
  // Full fine-tuning: the parameter store keeps trainable weights only as fp32 masters (counted below).
  plan.components.push_back(
      {"base weights", base_bytes,
       full ? "none frozen (every weight is a trainable fp32 master)"
       : in.quant_bytes_per_element > 0
           ? fmt::format("{} quantized projection elements at {} B (scales included), {} others at {} B",
                         linear_elems, in.quant_bytes_per_element, other_elems, wbytes)
           : fmt::format("{} frozen elements, {} B each{}", plan.base_elements, wbytes,
                         tp > 1 ? fmt::format(" (projections, embedding and lm_head 1/{} per rank, tp)", tp) : std::string())});
  plan.components.push_back(
      {"quant scales", scale_bytes,
       in.quant_bytes_per_element > 0
           ? (scale_bytes > 0 ? "per-block scales" : "in base weights (the quantizer's bytes include them)")
           : "none"});

  plan.trainable_elements = full ? plan.base_elements : adapter_elems;
  plan.components.push_back({"adapters", adapter_elems * 4,
                             full ? "none (full fine-tuning)"
                                  : fmt::format("LoRA r={}, {} elements fp32", in.lora_rank, adapter_elems)});
  const int64_t master = full ? plan.trainable_elements * 4 : 0;
  plan.components.push_back(
      {"master weights", master, full ? "fp32 trainable weights" : "none (adapters are fp32 already)"});
  plan.components.push_back({"gradients", plan.trainable_elements * 4,
                             fmt::format("{} trainable elements fp32", plan.trainable_elements)});
  plan.components.push_back(
      {"optimizer state",
       static_cast<int64_t>(std::ceil(plan.trainable_elements * in.optimizer_state_bytes_per_element)),
       fmt::format("{} B per trainable element", in.optimizer_state_bytes_per_element)});

  // Sharding strategies: what one rank keeps.
  const int64_t world = std::max<int64_t>(1, in.world_size);
  auto per_rank = [&](const char* name) {
    for (auto& c : plan.components) {
      if (c.name != name || c.bytes == 0) continue;
      c.bytes = (c.bytes + world - 1) / world;
      c.detail += fmt::format(", 1/{} per rank ({})", world, in.strategy);
    }
  };
  if (in.strategy == "zero3" || in.strategy == "fsdp") {  // the same memory; fsdp pads once per buffer
    for (const char* name : {"base weights", "quant scales", "adapters", "master weights", "gradients",
                             "optimizer state"})
      per_rank(name);
    // Gathered whole at once: the largest block (all blocks are alike) and everything outside blocks.
    int64_t block_elems = per_block_other, block_adapters = 0;
    for (const auto& l : block_linears(m)) {
      block_elems += l.out * l.in;
      if (!full && targeted(in, l.name)) block_adapters += in.lora_rank * (l.out + l.in);
    }
    const int64_t outside = other_elems - per_block_other * m.n_layers;
    const int64_t value_bytes = full ? 4 : wbytes;  // fp32 masters when trained, else the storage dtype
    const int64_t gathered = (block_elems + outside) * value_bytes + block_adapters * 4 +
                             (full ? (block_elems + outside) * 4 : block_adapters * 4);  // + full gradients
    plan.components.push_back(
        {"gathered", gathered,
         fmt::format("one block ({} elements) and the embedding, final norm, lm_head ({}) whole, with their "
                     "full gradients",
                     block_elems + block_adapters, outside)});
  } else if (in.strategy == "zero2") {
    per_rank("optimizer state");
  }

  // Activations.
  const int64_t tokens = in.micro_batch_size * in.seq_len;
  // Cheap recompute: a kept block gives back its two norms' outputs and SwiGLU's until backward reaches it,
  // which recomputes them for that one block.
  const int64_t cheap = in.recompute_cheap_ops ? (2 * m.hidden_size + m.intermediate_size / tp_parts(in)) * tokens : 0;
  const int64_t per_block = activation_elements_per_token(in) * tokens - cheap;
  int64_t act_elems = 0;
  std::string act_detail;
  const int64_t ckpt = in.checkpoint_blocks < 0 ? m.n_layers : std::min<int64_t>(in.checkpoint_blocks, m.n_layers);
  // With offload the checkpointed blocks' inputs live in host memory: at most two are on the device at once
  // (one being copied out while the next block runs; in backward, one replayed and the next prefetched).
  const int64_t inputs_on_device =
      in.offload_activations ? std::min<int64_t>(ckpt, 2) : ckpt;
  const std::string where = in.offload_activations ? " (offloaded to host memory, 2 on the device)" : "";
  // train.keep_attention: each checkpointed block keeps its attention's output and statistics for the replay,
  // where its inputs are. When backward replays a block, the replay takes its own instead of computing them (so
  // they are part of the replayed block's height already); the others are on the device too (with offload one:
  // the next block's, prefetched).
  const int64_t memo_blocks = in.keep_attention && in.activation_checkpointing ? std::max<int64_t>(inputs_on_device - 1, 0) : 0;
  const int64_t memo = memo_blocks * (int64_t(m.n_heads) * m.head_dim + m.n_heads) / tp_parts(in) * tokens;
  const std::string memo_detail =
      memo ? fmt::format(" + the attention outputs and statistics of {} more", memo_blocks) : "";
  if (in.activation_checkpointing && ckpt == m.n_layers) {
    // each block keeps its input; in backward one block at a time is replayed, holding all its outputs
    act_elems = inputs_on_device * m.hidden_size * tokens + memo + activation_elements_per_token(in) * tokens;
    act_detail = fmt::format("checkpointed: block inputs of {} blocks{}{} + one block replayed, {} tokens",
                             m.n_layers, where, memo_detail, tokens);
  } else if (in.activation_checkpointing && ckpt > 0) {
    // The last L-N blocks keep their saved tensors until backward reaches them; by the time it replays the
    // checkpointed first N, those are freed.
    const int64_t kept = resident_kept_blocks(m.n_layers, ckpt, in.offload_kept_blocks) * per_block + cheap;
    act_elems = inputs_on_device * m.hidden_size * tokens + memo +
                std::max(kept, activation_elements_per_token(in) * tokens);
    act_detail = fmt::format("{} of {} blocks checkpointed (the first){}{}, {} elements/token/block kept by the "
                             "others{}{}, {} tokens",
                             ckpt, m.n_layers, where, memo_detail, per_block / std::max<int64_t>(tokens, 1),
                             cheap ? " (norm and SwiGLU outputs recomputed)" : "", offloaded_kept_detail(m.n_layers, ckpt, in.offload_kept_blocks), tokens);
  } else {
    act_elems = resident_kept_blocks(m.n_layers, 0, in.offload_kept_blocks) * per_block + cheap;
    act_detail = fmt::format("{} elements/token/block x {} tokens x {} blocks{}{}", per_block / std::max<int64_t>(tokens, 1),
                             tokens, m.n_layers, cheap ? " (norm and SwiGLU outputs recomputed)" : "",
                             offloaded_kept_detail(m.n_layers, 0, in.offload_kept_blocks));
  }
  act_elems += (2 * m.hidden_size + 1) * tokens;  // final norm input and output, the loss's log-sum-exp
  plan.components.push_back({"activations", act_elems * abytes, act_detail});
  plan.components.push_back({"inputs", 3 * tokens * 4, "ids, labels, positions (int32)"});

  // On top of the saved tensors, the larger of two moments that never overlap (in the compute dtype): a block's
  // forward or replay at its height (its unsaved summands, block_pending_elements_per_token, and the gradient
  // arriving from the block above, C) and its backward at the top (down's input gradient, I, and the residual
  // stream's, 2C). The fused loss never holds a full (N, V) logit matrix.
  const int64_t i_part = m.intermediate_size / tp_parts(in);
  const int64_t transient =
      tokens * std::max(block_pending_elements_per_token(in) + m.hidden_size, i_part + 2 * m.hidden_size) * abytes;
  const int64_t ws = in.cuda ? (int64_t(32) << 20) + transient : transient;
  plan.components.push_back(
      {"workspace", ws, in.cuda ? "cuBLASLt workspace + a block's unsaved values or backward gradients"
                                 : "a block's unsaved values or backward gradients"});

  for (const auto& c : plan.components) plan.total_bytes += c.bytes;
  return plan;
}

int64_t fewest_checkpoint_blocks(PlanInputs in, int64_t budget) {
  in.activation_checkpointing = true;
  for (int64_t n = 0; n <= in.model.n_layers; ++n) {
    in.checkpoint_blocks = n;
    if (make_memory_plan(in).total_bytes <= budget) return n;
  }
  return -1;
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
    out +=
        fmt::format("   of {} ({:.1f}%){}", format_bytes(plan.device_memory),
                    100.0 * static_cast<double>(plan.total_bytes) / static_cast<double>(plan.device_memory),
                    plan.fits() ? "" : "  DOES NOT FIT");
  }
  out += "\n";
  return out;
}

}  // namespace engine::train
