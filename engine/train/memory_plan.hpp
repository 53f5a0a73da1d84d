// MemoryPlan: what a run will need on one device, computed from sizes alone before anything is loaded
// (`engine plan RECIPE`). Decoder-only llama/qwen2-style transformers: per block q,k,v,o projections
// (q: (Hq*D, C), k and v: (Hkv*D, C), o: (C, Hq*D)), a SwiGLU MLP (gate, up: (I, C), down: (C, I)) and two
// RMSNorms; an embedding (V, C) and an lm_head (V, C) unless tied.
//
// Components (bytes):
//   base weights    every frozen base parameter in its storage dtype (a quantizer's packed size where it
//                   holds them); none for full fine-tuning
//   quant scales    the quantizer's per-block scales
//   adapters        PEFT parameters, fp32 (r * (in + out) per target linear for LoRA)
//   master weights  full fine-tuning: every weight as an fp32 master (the store keeps no narrower copy)
//   gradients       fp32, one per trainable element
//   optimizer       trainable elements * the optimizer's state_bytes_per_element
//   activations     what the autograd tape keeps for backward: per token and block, the tensors each op saves
//                   (see activation_elements_per_token), times B*T and the number of blocks; with
//                   activation checkpointing each block's input, plus the saved tensors of the one block being
//                   replayed; with N of L blocks checkpointed (the first N), the larger of the end of forward
//                   (N inputs + L-N blocks' saved tensors) and the replay of block N-1 (N inputs + one block's)
//   inputs          ids, labels and positions of a micro-batch
//   workspace       the larger of a block's unsaved values at its forward's or replay's height
//                   (block_pending_elements_per_token, + the gradient arriving) and the gradients alive at once
//                   in its backward (+ the cuBLASLt workspace on CUDA)
//   pipeline        pp only: the plan of the busiest stage (PlanInputs::pp_size); layers: of the busiest device
//   gathered        zero3 only: the full values (and full gradients of the trainable ones) of the largest
//                   block and of the parameters outside blocks, which exist whole while they are used; the
//                   weight components above are then 1/world per rank (rounded up per parameter)
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "engine/abi/engine.h"

namespace engine::train {

struct PlanModelShape {
  int32_t n_layers = 0;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // qwen2: q, k, v have biases
};

struct PlanInputs {
  PlanModelShape model;
  eng_dtype weight_dtype = ENG_F32;   // storage dtype of the base weights
  eng_dtype compute_dtype = ENG_F32;  // activations' dtype (f32 on the CPU backend)
  // PEFT: empty targets with lora_rank 0 means full fine-tuning of every parameter
  int64_t lora_rank = 0;
  std::set<std::string> lora_targets;  // short names (q_proj, ...) of targeted linears; "all-linear" expands
  // quantizer: bytes per quantized element and scale bytes per element (nf4: 0.5 and 4/64 + double quant);
  // applied to the projection weights of the blocks only. 0 = no quantizer.
  double quant_bytes_per_element = 0.0;
  double quant_scale_bytes_per_element = 0.0;
  double optimizer_state_bytes_per_element = 8.0;
  int64_t micro_batch_size = 1;
  int64_t seq_len = 512;
  bool activation_checkpointing = false;
  int64_t checkpoint_blocks = -1;  // with activation_checkpointing: the first N blocks recompute; < 0: all
  bool offload_activations = false;  // checkpointed blocks' inputs in host memory (two on the device at once)
  bool recompute_cheap_ops = false;  // kept blocks give back their norms' and SwiGLU's outputs until backward
  bool keep_attention = false;       // checkpointed blocks keep their attention's output and statistics
  // the first N kept blocks hold their activations in host memory (rt::Tape::set_offload_kept_blocks)
  int64_t offload_kept_blocks = 0;
  bool cuda = false;
  int64_t device_memory = 0;  // bytes; 0 = unknown
  // The parallel strategy and the number of ranks: the plan is per rank. zero3 keeps 1/world of the
  // parameters, gradients and optimizer state at rest and one gathered block (plus the embedding, final norm
  // and lm_head, gathered through the step) in full; zero2 keeps 1/world of the optimizer state; ddp all.
  std::string strategy;
  int64_t world_size = 1;
  int64_t tp_size = 0;  // tp: ranks of one tensor-parallel group (parallel.tp_size; 0: the world)
  // pp: stages of one pipeline (parallel.pp_size; 0: the world), the blocks of the largest stage (0: the
  // balanced cut's), the schedule (GPipe keeps every micro-batch in flight, 1F1B at most `stages`) and the
  // micro-batches of a step (train.grad_accum). The plan is the busiest stage's: the most blocks, one
  // vocabulary matrix (the first stage's embedding or the last's lm_head) and the first stage's in-flight
  // micro-batches' activations.
  // layers (one process, several devices) reuses the two: pp_size the devices, pp_stage_blocks the blocks of the
  // largest device's share; its plan is the busiest device's with one micro-batch in flight.
  int64_t pp_size = 0;
  int64_t pp_stage_blocks = 0;
  bool pp_gpipe = false;
  int64_t grad_accum = 1;
};

struct PlanComponent {
  std::string name;
  int64_t bytes = 0;
  std::string detail;  // how it was computed, for the printed table
};

struct MemoryPlan {
  std::vector<PlanComponent> components;
  int64_t total_bytes = 0;
  int64_t device_memory = 0;
  int64_t trainable_elements = 0;
  int64_t base_elements = 0;
  bool fits() const { return device_memory == 0 || total_bytes <= device_memory; }
};

// The short names of a block's projections, in declaration order.
const std::vector<std::string>& block_linear_names();

// Elements the autograd tape keeps per token for one block without checkpointing (see the .cpp).
int64_t activation_elements_per_token(const PlanInputs& in);

// Elements per token alive beyond one block's saved tensors at the height of its forward or replay.
int64_t block_pending_elements_per_token(const PlanInputs& in);

MemoryPlan make_memory_plan(const PlanInputs& in);

// Selective checkpointing (train.activation_checkpointing = "auto"): the fewest blocks (counted from the
// first) whose recompute makes the plan's total fit `budget` bytes, or -1 when even every block does not fit.
int64_t fewest_checkpoint_blocks(PlanInputs in, int64_t budget);

// "1.25 GiB", "512 KiB", "37 B"
std::string format_bytes(int64_t bytes);

// The table `engine plan` prints (one line per component, the total against the device's memory).
std::string format_memory_plan(const MemoryPlan& plan, const std::string& device_name);

}  // namespace engine::train
