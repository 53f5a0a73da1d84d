// One optimizer step's micro-batches through the stages of a pipeline (pipeline parallelism; the strategy's
// ABI 1.1 pipeline entry, e.g. plugins/pp).
//
// Every stage holds the same micro-batches (the ranks of one model group train on the same rows). Stage s runs
// the model's blocks [first_block, last_block) through forward_blocks: the first from the token ids, the others
// from the activations the previous stage sends; the last applies lm_head and the loss. Each micro-batch in
// flight is recorded on a tape of its own (the session's tape settings: checkpointing, offload), so that its
// backward can run while later micro-batches' forwards are still recorded; the activations that arrive are
// leaves of that tape, and their gradients go back to the previous stage.
//
// The schedule (eng_pipeline_stage.warmup = W of M micro-batches): W forwards, then M - W times one forward and
// one backward, then the W remaining backwards (1F1B: W = stages - 1 - stage; GPipe: W >= M). A neighbour pair
// exchanges its messages over a two-rank group in one order that both derive from the schedule: where a stage
// finishes a backward and its next forward needs an input, it receives that input before it sends the
// gradient, which is the order in which the stage below sends the activation and then waits for the gradient.
// Blocking sends and receives therefore never wait on each other in a cycle.
#pragma once

#include <span>

#include "engine/data/packing.hpp"
#include "engine/session/session.hpp"

namespace engine::train {

// Accumulates this stage's gradients for the micro-batches (loss scaled by `scale`) and returns the loss on the
// last stage (0 on the others). A replicated trainable parameter this stage did not use gets a zero gradient,
// so that the strategy's sum over the stages finds the same gradients on each.
double pipeline_forward_backward(session::TrainingSession& session, std::span<const data::Batch> micro_batches,
                                 double scale);

// The summed (unscaled) loss of the batches without gradients on the last stage (0 on the others).
double pipeline_evaluate(session::TrainingSession& session, std::span<const data::Batch> batches);

}  // namespace engine::train
