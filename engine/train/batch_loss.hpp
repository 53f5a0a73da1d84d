// One micro-batch's way through the model: its tensors on the run's device, and the loss of the hidden states
// the model (or the last pipeline stage) returns. Shared by the plain pass (forward_backward.cpp) and the
// pipeline's (pipeline_pass.cpp).
#pragma once

#include "engine/data/packing.hpp"
#include "engine/runtime/tensor.hpp"
#include "engine/session/session.hpp"

namespace engine::train {

// A batch on the device: ids and positions (B,T) i32; segment ids (B,T) i32 only for packed rows that need the
// mask (undefined otherwise, so the dense attention kernels serve them).
struct BatchTensors {
  rt::Tensor ids, pos, seg;
};
BatchTensors batch_tensors(session::TrainingSession& session, const data::Batch& b);

// hidden (B,T,C) -> the scaled loss () f32 through lm_head and the fused cross-entropy, recorded when grad is on.
rt::Tensor head_loss(session::TrainingSession& session, const data::Batch& b, const rt::Tensor& hidden, double scale,
                     bool grad);

// The whole model on one batch: the scaled loss () f32, recorded when grad is on.
rt::Tensor batch_loss(session::TrainingSession& session, const data::Batch& b, double scale, bool grad);

}  // namespace engine::train
