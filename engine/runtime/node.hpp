// Node: one differentiable op as the autograd tape records it.
//
// Each built-in op (engine/runtime/ops/*) and each plugin-registered custom op is a Node subclass that holds
// its attributes (eps, rope config, dropout seed, ...). The tape calls forward() once when the op runs and
// again when activation checkpointing replays a block, so forward() must be a pure function of its inputs
// and attributes (dropout derives its mask from a seed stored in the node). forward() keeps what backward()
// needs when `save` is true; release_saved() drops it once backward is done or the block is checkpointed.
#pragma once

#include <utility>
#include <vector>

#include "engine/runtime/tensor.hpp"

namespace engine::rt {

class Node {
 public:
  virtual ~Node() = default;
  virtual const char* name() const = 0;

  // inputs -> outputs. Undefined input tensors stand for absent optional inputs.
  virtual std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) = 0;

  // grad_outputs[i] is the gradient of outputs[i] (undefined: zero / unused). Returns one entry per input:
  // its gradient, or an undefined tensor where needs_grad[i] is false or the input is not differentiable.
  virtual std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs, const std::vector<bool>& needs_grad) = 0;

  // Drops the tensors saved for backward.
  virtual void release_saved() = 0;

  // True for a cheap op (elementwise or a norm) whose saved state keeps every one of its inputs: a block that
  // keeps its activations may then give its outputs' memory back after the forward and recompute them from
  // those inputs, at no memory cost, when backward reaches the block (Tape::set_recompute_cheap_ops).
  virtual bool recomputable() const { return false; }

  // Replay memo (Tape::set_replay_memo). A costly op (attention) may keep its results when it runs in a
  // checkpointed block, so that the block's replay takes them instead of running its kernels again. The tape
  // calls memoize() before such a forward(save = false); a node that returns true keeps from that forward what
  // its next forward(save = true) of the same inputs would compute, lists those tensors in memo() (the tape may
  // move their storages to host memory and back in between; every handle stays valid), and its replay's forward
  // takes them instead of recomputing: the same bits, since forward is a pure function of the inputs.
  virtual bool memoize() { return false; }
  virtual std::vector<Tensor> memo() const { return {}; }

  // Which inputs backward will be asked a gradient for: the tape sets it before each forward(save = true), so
  // that a node can save less where a gradient is not wanted (linear keeps x only for its weight's gradient,
  // which a frozen base weight never has). Never set (a node run outside a tape): every input's is wanted.
  void set_input_needs_grad(std::vector<bool> needs) { input_needs_grad_ = std::move(needs); }

 protected:
  bool input_needs_grad(size_t i) const { return i >= input_needs_grad_.size() || input_needs_grad_[i]; }

 private:
  std::vector<bool> input_needs_grad_;
};

}  // namespace engine::rt
