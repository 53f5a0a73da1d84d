// Autograd: the tape that records applied Nodes and runs them backwards, with per-block activation
// checkpointing.
//
// Recording. Tape::apply(node, inputs) runs node->forward(). When grad mode is on and at least one input
// requires grad, the tape keeps the node (which saved what its backward needs) together with the value ids
// of its inputs and outputs, in execution order. Outputs then require grad. Values that require grad but were
// not produced by a recorded node are leaves: Tape::leaf() gives a tensor a fresh value id and a GradSink
// into which backward accumulates its gradient (parameters: the sink is the parameter's persistent fp32 grad,
// shared by every use and by tied parameters, so micro-batches accumulate).
//
// Backward. backward(loss) seeds d loss = 1 and walks the recorded entries in reverse. Each entry's output
// gradients are taken out of the map of pending gradients (freeing them), its node's backward runs, its saved
// tensors are released and the node is destroyed, and the input gradients are added to the pending map (an
// intermediate value used twice gets its two contributions summed in tape order) or into the leaf's sink.
// The order of every addition is fixed by the tape, so gradients are bitwise reproducible.
//
// Checkpointing. block_begin(i)/block_end(i) bracket a decoder block. With checkpointing on, nodes of a block
// run forward with save = false and the entry keeps references to its block-external inputs only (values
// produced outside the block, leaves, and tensors not on the tape; parameter leaves are kept as a way to
// re-resolve the parameter's value rather than as a tensor); everything produced inside the block
// lives only as long as the caller holds it. When backward reaches the block's last entry, the tape replays
// the block's nodes forward with save = true from those inputs (value ids map replayed outputs onto the
// recorded ones) and then backpropagates through them. Nodes are pure functions of inputs and attributes, so
// the replayed values and hence the gradients are bitwise identical to a run without checkpointing.
//
// Cheap recompute (set_recompute_cheap_ops). In a block that keeps its activations, the outputs of recomputable
// nodes (Node::recomputable: RMSNorm, SwiGLU, SiLU, whose saved state keeps their inputs anyway) give their
// memory back at block_end (rt::Storage::release_memory: every handle and view stays valid); when backward
// reaches the block those nodes run forward again from the same inputs and the results move into the original
// storage (Storage::adopt_memory), before any node of the block runs backward. A recorded node that takes an
// evicted value as input later in the forward gets it recomputed first. The same bits either way.
//
// Kept-block offload (set_offload_kept_blocks): the first N blocks that keep their activations (the blocks right
// after the checkpointed ones) move what their nodes saved to pinned host memory after their forward, whole
// storages at a time (ActivationOffload::stash_storage; the block's output stays, and its input goes with it),
// and get it back before backward reaches them, prefetched ahead: as many blocks at once as backward has
// finished, so that the copies add nothing to the highest point at backward's start. A storage's device memory
// is given back once its copy is done, and at the latest when the blocks still to come could not otherwise stay
// under the memory of the blocks that keep theirs (block_end of block j holds at most L - 1 - j offloaded
// blocks), so the forward's highest point is that of the kept blocks alone; a slow link shows as the compute
// stream waiting. A recorded op that reads an offloaded value later in the forward gets it back first. The
// same bits.
//
// Replay memo (set_replay_memo): in a checkpointed block, a node that can (Node::memoize: attention) keeps its
// results from the forward, and the replay takes them instead of running it again. With activation offload
// their storages go to pinned host memory like the block's inputs (copied out behind the compute stream, given
// back at the next block's end, brought back before the replay, the next checkpointed block's prefetched). The
// same bits.
//
// Block hooks (the parallel strategy's gather/release points) are called by the tape in backward around each
// block, and by the block seam owner (engine/host) around the forward.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/runtime/activation_offload.hpp"
#include "engine/runtime/node.hpp"
#include "engine/runtime/tensor.hpp"

namespace engine::rt {

// Where a leaf's gradient accumulates. The gradient is allocated lazily (zeros of the leaf's shape, in
// `dtype`) at the first accumulation and persists until zero()/clear(): gradient accumulation over
// micro-batches is just several backward passes into the same sink.
class GradSink {
 public:
  GradSink(const Dims& shape, DType dtype, Device& device) : shape_(shape), dtype_(dtype), device_(&device) {}

  // grad += g (g converted to the sink's dtype; shapes must match).
  void accumulate(const Tensor& g);
  // The accumulated gradient, undefined before the first accumulate() (or after clear()).
  const Tensor& grad() const {
    settle();
    return grad_;
  }
  Tensor& grad() {
    settle();
    return grad_;
  }
  // Sets the gradient to zero, keeping the buffer (undefined stays undefined). Lazy: the next accumulate()
  // overwrites the buffer instead of adding to it, and grad() zeroes it first if it is read before then, so
  // a training step does not memset and then re-read every parameter's gradient.
  void zero();
  // Frees the gradient.
  void clear() {
    grad_ = Tensor();
    zero_pending_ = false;
  }
  const Dims& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  // (optional) called after every accumulation (the parallel strategy's grad_ready hook).
  std::function<void()> on_accumulated;

 private:
  void settle() const;  // carries out a pending zero()

  Dims shape_;
  DType dtype_;
  Device* device_;
  mutable Tensor grad_;
  mutable bool zero_pending_ = false;
};

// Autograd bookkeeping of one recorded value (TensorImpl::autograd).
struct AutogradMeta {
  uint64_t value_id = 0;  // unique per tape; 0: not on a tape
  bool requires_grad = false;
  std::shared_ptr<GradSink> sink;  // leaves only: where backward accumulates the gradient
  // (optional, leaves) re-resolves the leaf's value when a checkpointed block is replayed, so the block keeps
  // no reference to it in between (parameters: a sharding strategy may release and re-gather them).
  std::function<Tensor()> rebind;
};

// The phases block hooks are called for.
enum class BlockPhase { Forward, Backward };

// Hooks around decoder blocks (implemented by the engine's parallel-strategy adapter). The tape calls the
// Backward phase around each block it backpropagates through (before a checkpointed block is replayed).
class BlockHooks {
 public:
  virtual ~BlockHooks() = default;
  virtual void before_block(int block, BlockPhase phase) = 0;
  virtual void after_block(int block, BlockPhase phase) = 0;
};

// Statistics of the last backward pass (for tests and logs).
struct BackwardStats {
  int64_t nodes_run = 0;       // node backward() calls
  int64_t nodes_replayed = 0;  // node forward() calls made by checkpoint replay
  int64_t blocks_replayed = 0;
  int64_t nodes_recomputed = 0;   // cheap recompute: node forward() calls that refilled evicted outputs
  int64_t bytes_recomputed = 0;   // and the bytes they refilled
  int64_t nodes_from_memo = 0;    // replay memo: replayed nodes that took their memoized results
};

class Tape {
 public:
  Tape() = default;
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  // Runs node->forward(inputs) and records it when grad mode is on and an input requires grad.
  std::vector<Tensor> apply(std::unique_ptr<Node> node, const std::vector<Tensor>& inputs);

  // A view of `value` that is a leaf requiring grad; backward accumulates its gradient into `sink`. With
  // `rebind`, checkpointed blocks re-resolve the value at replay instead of keeping this tensor.
  Tensor leaf(const Tensor& value, std::shared_ptr<GradSink> sink, std::function<Tensor()> rebind = {});

  // Backpropagates from `loss` (grad: d loss, default ones) through every recorded entry, then clears the
  // tape.
  void backward(const Tensor& loss, const Tensor& grad = Tensor());

  // Drops every recorded entry without running backward (e.g. after an evaluation forward with grad on).
  void clear();

  // This tape's settings (grad mode, checkpointing, block hooks, activation offload) given to `other`, an
  // empty tape (pipeline parallelism: one tape per micro-batch in flight, all recording alike).
  void configure_like(Tape& other) const;

  bool grad_enabled() const { return grad_enabled_; }
  void set_grad_enabled(bool on) { grad_enabled_ = on; }

  // Activation checkpointing of blocks opened from now on: every block (on), none (off), or only the blocks
  // with index < n (selective checkpointing: n of the model's blocks recompute, the others keep their
  // activations; n < 0 means every block).
  bool checkpointing() const { return checkpoint_limit_ != 0; }
  void set_checkpointing(bool on) { checkpoint_limit_ = on ? -1 : 0; }
  void set_checkpoint_blocks(int64_t n) { checkpoint_limit_ = n; }
  int64_t checkpoint_blocks() const { return checkpoint_limit_; }
  bool checkpoints_block(int block) const { return checkpoint_limit_ < 0 || block < checkpoint_limit_; }

  // Bracket a block. Blocks do not nest; block_end must name the open block.
  void block_begin(int block);
  void block_end(int block);
  int current_block() const { return open_block_; }  // -1 outside blocks

  void set_block_hooks(BlockHooks* hooks) { hooks_ = hooks; }

  // Cheap recompute (see above) in the blocks opened from now on that are not checkpointed.
  void set_recompute_cheap_ops(bool on) { recompute_cheap_ = on; }
  bool recompute_cheap_ops() const { return recompute_cheap_; }
  // Bytes of outputs currently given back by cheap recompute (for tests and the memory log).
  int64_t evicted_bytes() const { return evicted_bytes_; }

  // Replay memo (see above) for the nodes applied from now on in checkpointed blocks.
  void set_replay_memo(bool on) { replay_memo_ = on; }
  bool replay_memo() const { return replay_memo_; }
  // Of offloaded_bytes(), the bytes of memoized results the last forward moved to host memory.
  int64_t offloaded_memo_bytes() const { return offloaded_memo_last_; }

  // Offload of checkpointed blocks' kept inputs to host memory (engine/runtime/activation_offload.hpp):
  // blocks opened from now on, when they are checkpointed. The gradients are the same bits either way.
  void set_activation_offload(bool on, size_t min_bytes = size_t(1) << 20);
  bool activation_offload() const { return offload_inputs_; }
  // Bytes the forward of the last backward moved to host memory (0 without offload).
  int64_t offloaded_bytes() const { return offloaded_last_; }

  // Kept-block offload (see above) of the blocks opened from now on: the first `blocks` blocks that are not
  // checkpointed, out of a model of `model_blocks` blocks (it schedules when device memory is given back).
  // 0 turns it off. Uses the activation offload's pinned pool and copy stream.
  void set_offload_kept_blocks(int64_t blocks, int64_t model_blocks, size_t min_bytes = size_t(1) << 20);
  int64_t offload_kept_blocks() const { return offload_kept_; }
  // Of offloaded_bytes(), the bytes kept blocks moved.
  int64_t offloaded_kept_bytes() const { return offloaded_kept_last_; }

  size_t size() const { return entries_.size(); }
  const BackwardStats& last_backward_stats() const { return stats_; }

  // True when `t` is on this tape and requires grad.
  static bool requires_grad(const Tensor& t);

 private:
  struct Entry {
    std::unique_ptr<Node> node;
    std::vector<uint64_t> input_ids;  // 0: input not on the tape (constant)
    std::vector<bool> input_needs_grad;
    std::vector<std::shared_ptr<GradSink>> input_sinks;  // leaves
    std::vector<Tensor> kept_inputs;  // checkpointed entries: the block-external inputs (else empty)
    std::vector<std::function<Tensor()>> rebinds;  // checkpointed entries: leaves re-resolved at replay
    std::vector<uint64_t> output_ids;
    int segment = -1;  // index into segments_, -1 outside blocks
    // Cheap recompute: a recomputable node of a kept block holds its inputs in kept_inputs and its outputs
    // here until backward reaches the block; an output whose memory was given back stays defined.
    std::vector<Tensor> evictable;
    // Kept-block offload: the storages of the outputs (whoever still holds them at block_end is what is saved).
    std::vector<std::weak_ptr<Storage>> output_storages;
    bool memoized = false;  // replay memo: the node kept its results from the checkpointed forward
  };
  // A kept input of a checkpointed block held in host memory: its ticket and the slots (entry, input) that
  // get the tensor back before the replay.
  struct Stashed {
    int64_t ticket = -1;
    std::vector<std::pair<size_t, size_t>> slots;
  };
  struct Segment {
    int block = -1;
    bool checkpointed = false;
    size_t first = 0, last = 0;  // entries [first, last)
    std::vector<Stashed> stashed;  // with activation offload
    bool evicted = false;          // cheap recompute gave back outputs of this block
    bool offloads_kept = false;    // kept-block offload: its saved activations go to host memory
    std::vector<int64_t> kept_tickets;  // their storage tickets
    std::vector<int64_t> memo_tickets;  // replay memo with activation offload: the memoized storages' tickets
  };

  // Value ids are unique over every tape of the process, so that tapes may coexist (a pipeline stage records
  // each micro-batch in flight on a tape of its own) and a leaf of one is never mistaken for a value of another.
  static uint64_t next_id();
  void replay(const Segment& seg);
  void stash_inputs(Segment& seg);    // block_end of a checkpointed block, with offload
  void restore_inputs(Segment& seg);  // before its replay
  void prefetch_inputs(const Segment& seg);  // and its memoized results
  void release_memo();                       // device memory of the memo copies started so far
  void evict_outputs(Segment& seg);  // block_end of a kept block, with cheap recompute
  void recompute(size_t entry);      // refills entry's evicted outputs (its evicted inputs first)
  void recompute_segment(const Segment& seg);
  void stash_kept(Segment& seg);          // block_end of an offloaded kept block
  void release_kept(int block);           // storages whose copies are done, and those due by `block`; < 0: all
  void restore_kept(Segment& seg);        // before backward runs through it
  void restore_offloaded(const Tensor& t);  // forward: a recorded op reads an offloaded value
  size_t min_offload_bytes() const { return offload_ ? offload_->min_bytes() : size_t(1) << 20; }

  bool grad_enabled_ = true;
  int64_t checkpoint_limit_ = 0;  // blocks with index < this are checkpointed; < 0: all
  bool in_backward_ = false;
  std::vector<Entry> entries_;
  std::vector<Segment> segments_;
  int open_block_ = -1;
  int open_segment_ = -1;
  std::unordered_set<uint64_t> produced_in_block_;  // value ids made by recorded nodes of the open block
  BlockHooks* hooks_ = nullptr;
  BackwardStats stats_;
  std::unique_ptr<ActivationOffload> offload_;  // for offload_inputs_ and offload_kept_
  bool offload_inputs_ = false;                 // checkpointed blocks' kept inputs
  int64_t offloaded_last_ = 0;
  int64_t offload_kept_ = 0, offload_model_blocks_ = 0;
  int64_t offloaded_kept_last_ = 0;
  std::vector<size_t> kept_pending_;  // offloaded segments whose storages are not all released yet, in order
  std::unordered_map<const Storage*, int64_t> offloaded_;  // storage -> ticket, until restored
  bool recompute_cheap_ = false;
  std::unordered_map<uint64_t, size_t> evicted_;  // value id of an evicted output -> its entry
  int64_t evicted_bytes_ = 0;
  bool replay_memo_ = false;
  std::vector<int64_t> memo_pending_;  // memo tickets whose device memory is not given back yet
  int64_t memo_stashed_ = 0, offloaded_memo_last_ = 0;
};

// Disables recording on a tape for its lifetime (restores the previous mode).
class NoGradGuard {
 public:
  explicit NoGradGuard(Tape& tape) : tape_(tape), previous_(tape.grad_enabled()) {
    tape.set_grad_enabled(false);
  }
  ~NoGradGuard() { tape_.set_grad_enabled(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  Tape& tape_;
  bool previous_;
};

// acc += g without modifying any buffer acc may share: returns g itself when acc is undefined, acc itself with
// g added into it when acc is its memory's only handle (Tensor::sole_owner), else a new tensor acc + g (in
// acc's dtype; the same bits either way). Shapes must match. Used for intermediate gradients.
Tensor add_gradients(const Tensor& acc, const Tensor& g);

}  // namespace engine::rt
