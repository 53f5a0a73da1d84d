// One optimizer step's worth of forward and backward passes with gradient accumulation.
//
// The loss of a step is the mean cross-entropy over every label token of all its micro-batches:
//   loss = (1 / N) * sum over micro-batches m, tokens t with label != -100 of CE(logits_mt, label_mt)
// with N counted over all micro-batches BEFORE any forward pass, so each micro-batch's backward uses the
// same scale 1/N and the accumulated gradient equals the gradient of one big batch (4 micro-batches of 1 row
// give the gradient of 1 batch of 4 rows, to fp32 rounding). Micro-batches never average on their own.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/data/packing.hpp"
#include "engine/session/session.hpp"

namespace engine::train {

struct PassResult {
  double loss = 0.0;         // the step's mean loss over label tokens (sum of the scaled micro losses)
  int64_t label_tokens = 0;  // N
  int64_t input_tokens = 0;  // non-padding positions fed
};

// Accumulates gradients into the parameters (does not zero them first; does not step). With a world size
// above 1, N and the input-token count are summed over ranks before any forward pass (each rank's
// micro-batches scale by 1 / N of the GLOBAL batch, so the sum of the ranks' gradients is the global
// batch's), and the returned loss is the global one (the ranks' scaled sums added up).
PassResult forward_backward(session::TrainingSession& session, std::span<const data::Batch> micro_batches);

// True when every row of the batch holds one sample, possibly followed by padding (segment ids 1..1 0..0):
// its attention then needs no segment mask (causal attention gives the same values at every labelled
// position), so the dense attention kernels serve it (cuDNN's fused forward and backward on CUDA).
bool single_sample_rows(const data::Batch& b);

// The summed (unscaled) loss and label count of batches, without gradients (evaluation).
PassResult evaluate_loss(session::TrainingSession& session, std::span<const data::Batch> batches);

}  // namespace engine::train
