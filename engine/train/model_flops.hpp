// Model FLOPs of a training step, the numerator of MFU (model FLOPs utilisation), counted the way the peers'
// benchmark counts them (../shared/peers/peer_lora.py), so that the engine's MFU and theirs compare:
//   per token: 2 x (parameters in matmuls, LM head included) for the forward, the same again for the input
//   gradients, and the same once more for the weight gradients when the base weights train (full
//   fine-tuning: 6N; LoRA/QLoRA over a frozen base: 4N; the adapters' own FLOPs are negligible and not
//   counted); attention: QK^T and PV over the causal half of each sample's own length (packed rows count
//   their segments, not the row), times 3.5 for forward plus backward.
// Recompute under activation checkpointing is not credited: MFU is useful work per second.
#pragma once

#include <cstdint>
#include <span>

#include "engine/abi/model.h"
#include "engine/data/packing.hpp"

namespace engine::train {

// Parameters in the matmuls of one token's forward (q, k, v, o, gate, up, down of every layer + LM head).
double matmul_params(const eng_model_info& info);

// Model FLOPs of one optimizer step over these micro-batches.
double step_model_flops(const eng_model_info& info, bool base_trainable, std::span<const data::Batch> micro);

}  // namespace engine::train
