// The memory plan's inputs for a recipe: the model's sizes from its config.json (nothing else is read), the
// PEFT rank and targets from [peft], micro-batch, sequence length, checkpointing and dtypes from [train] and
// [data], and the byte counts the optimizer and quantizer plugins report.
#pragma once

#include <nlohmann/json.hpp>

#include "engine/recipe/recipe.hpp"
#include "engine/train/memory_plan.hpp"

namespace engine::train {

// config.json (Hugging Face llama/qwen2 layout) -> sizes; engine::Error naming a missing key.
PlanModelShape plan_shape_from_config(const nlohmann::json& config);

// train.activation_checkpointing = "auto": the fewest blocks to recompute for the plan to fit 92% of
// in.device_memory (the rest is headroom for allocator rounding, the CUDA context and library workspaces);
// -1 (every block) when nothing fits.
// Where nothing fits, the fewest blocks whose plan is that of every block recomputed (-1 when that is all).
int64_t auto_checkpoint_blocks(const PlanInputs& in);

// With "auto" and train.offload_kept_blocks = N: the fewest kept blocks to offload (at most N) for which
// auto_checkpoint_blocks still recomputes in.checkpoint_blocks (the result of the full N): copies the plan does
// not need would only load the host link.
int64_t auto_offload_kept_blocks(const PlanInputs& in);

// quant_bytes_per_element: the quantizer's bytes per weight element, scales included (0: none).
// device_memory: the device's bytes, capped by train.max_memory; with activation_checkpointing = "auto" the
// result's checkpoint_blocks is resolved against it.
PlanInputs plan_inputs_for(const recipe::Recipe& recipe, const nlohmann::json& config,
                           double optimizer_bytes_per_element, double quant_bytes_per_element, bool cuda,
                           int64_t device_memory);

}  // namespace engine::train
