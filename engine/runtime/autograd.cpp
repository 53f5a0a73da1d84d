#include "engine/runtime/autograd.hpp"

#include <algorithm>
#include <atomic>

#include "engine/core/error.hpp"
#include "engine/runtime/kernel_table.hpp"
#include "engine/runtime/op_profile.hpp"

namespace engine::rt {

namespace {

// `t` as a contiguous tensor of `dtype` (no copy when it already is one).
Tensor as_contiguous(const Tensor& t, DType dtype) {
  Tensor c = t.dtype() == dtype ? t : t.to(dtype);
  return c.contiguous();
}

void check_same_shape(const Tensor& acc, const Tensor& g, const char* what) {
  if (acc.shape() != g.shape())
    fail(
        "autograd: a gradient of shape {} cannot be added to {} of shape {} "
        "(a node's backward returned a gradient whose shape differs from its input)",
        g.shape().str(), what, acc.shape().str());
}

}  // namespace

// ---- GradSink ------------------------------------------------------------------------------------------

void GradSink::accumulate(const Tensor& g) {
  if (g.shape() != shape_)
    fail("autograd: a gradient of shape {} was produced for a leaf of shape {}", g.shape().str(),
         shape_.str());
  if (!grad_.defined()) {
    // First contribution: an owned copy (g may alias another gradient or a saved tensor).
    grad_ = Tensor::empty(shape_, dtype_, *device_);
    grad_.copy_from(g);
  } else if (zero_pending_) {
    // First contribution after zero(): 0 + g is g, written over the kept buffer.
    grad_.copy_from(g);
    zero_pending_ = false;
  } else {
    if (!grad_.is_contiguous()) fail("autograd: the accumulated gradient is not contiguous");
    // grad += g on the gradient's device (g converted there if it is, e.g., bf16 on CUDA)
    device_->kernels().axpby(grad_, 1.0, as_contiguous(g.to_device(*device_), g.dtype()), 1.0);
  }
  if (on_accumulated) on_accumulated();
}

void GradSink::zero() { zero_pending_ = grad_.defined(); }

void GradSink::settle() const {
  if (!zero_pending_) return;
  device_->fill_zero(grad_.raw_data(), grad_.nbytes());
  zero_pending_ = false;
}

Tensor add_gradients(const Tensor& acc, const Tensor& g) {
  if (!acc.defined()) return g;
  check_same_shape(acc, g, "an intermediate gradient");
  DType dtype = acc.dtype();
  const bool direct = dtype == ENG_F32 || dtype == ENG_F64;
  // In place when nothing else sees acc (the pending gradient alone): no third buffer of its size, and for bf16
  // none of twice its size. The CUDA axpby computes a bf16 destination in f32 and rounds once, as below.
  if (acc.sole_owner() && (direct || (dtype == ENG_BF16 && acc.device().type() == DeviceType::CUDA))) {
    acc.device().kernels().axpby(acc, 1.0, as_contiguous(g, g.dtype()), 1.0);
    return acc;
  }
  const DType compute = direct ? dtype : ENG_F32;
  Tensor out = Tensor::empty(acc.shape(), compute, acc.device());
  out.copy_from(acc);
  acc.device().kernels().axpby(out, 1.0, as_contiguous(g, g.dtype()), 1.0);  // out = acc + g
  return direct ? out : out.to(dtype);
}

// ---- Tape ----------------------------------------------------------------------------------------------

bool Tape::requires_grad(const Tensor& t) {
  return t.defined() && t.impl()->autograd && t.impl()->autograd->requires_grad;
}

Tensor Tape::leaf(const Tensor& value, std::shared_ptr<GradSink> sink, std::function<Tensor()> rebind) {
  if (!value.defined()) fail("autograd: cannot make a leaf of an undefined tensor");
  if (!sink) fail("autograd: a leaf needs a gradient sink");
  auto impl = std::make_shared<TensorImpl>(*value.impl());
  impl->autograd = std::make_shared<AutogradMeta>();
  impl->autograd->value_id = next_id();
  impl->autograd->requires_grad = true;
  impl->autograd->sink = std::move(sink);
  impl->autograd->rebind = std::move(rebind);
  return Tensor(std::move(impl));
}

namespace {
// The device of the first defined tensor, when op profiling is on (OpTimer does nothing for null).
Device* profile_device(const std::vector<Tensor>& ts) {
  const OpProfile& p = OpProfile::instance();
  if (!p.enabled() && !p.memory()) return nullptr;
  for (const Tensor& t : ts)
    if (t.defined()) return &t.device();
  return nullptr;
}
}  // namespace

std::vector<Tensor> Tape::apply(std::unique_ptr<Node> node, const std::vector<Tensor>& inputs) {
  if (!node) fail("autograd: apply() got no node");
  if (!offloaded_.empty())  // a value kept-block offload moved to host memory, used again: bring it back first
    for (const Tensor& t : inputs)
      if (t.defined() && t.impl()->storage && t.impl()->storage->released()) restore_offloaded(t);
  if (!evicted_.empty())  // a value cheap recompute gave back, used again: refill it first
    for (const Tensor& t : inputs) {
      const AutogradMeta* meta = t.defined() ? t.impl()->autograd.get() : nullptr;
      if (meta == nullptr) continue;
      if (auto it = evicted_.find(meta->value_id); it != evicted_.end()) recompute(it->second);
    }
  std::vector<bool> needs;  // which inputs need a gradient, for the node's saving forward and for backward
  if (grad_enabled_ && !in_backward_) {
    needs.resize(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) needs[i] = requires_grad(inputs[i]);
  }
  const bool record = std::find(needs.begin(), needs.end(), true) != needs.end();
  const bool checkpointed =
      record && open_segment_ >= 0 && segments_[static_cast<size_t>(open_segment_)].checkpointed;
  const bool evictable = record && recompute_cheap_ && open_segment_ >= 0 && !checkpointed && node->recomputable();
  const bool memoized = checkpointed && replay_memo_ && node->memoize();
  // Checkpointed nodes save nothing now; backward replays them with save = true.
  std::vector<Tensor> outputs;
  {
    // An op applied while backward runs is one that a node's backward called (a plugin's custom op): profiled
    // as such, not as the forward's.
    OpTimer timer(profile_device(inputs), node->name(), in_backward_ ? "in backward" : "forward");
    if (record && !checkpointed) node->set_input_needs_grad(needs);
    outputs = node->forward(inputs, record && !checkpointed);
  }
  if (!record) return outputs;

  Entry e;
  e.segment = open_segment_;
  e.memoized = memoized;
  const size_t n = inputs.size();
  e.input_ids.resize(n, 0);
  e.input_needs_grad = std::move(needs);
  e.input_sinks.resize(n);
  if (checkpointed) {
    e.kept_inputs.resize(n);
    e.rebinds.resize(n);
  }
  for (size_t i = 0; i < n; ++i) {
    const Tensor& t = inputs[i];
    const AutogradMeta* meta = t.defined() ? t.impl()->autograd.get() : nullptr;
    if (meta != nullptr) {
      e.input_ids[i] = meta->value_id;
      e.input_sinks[i] = meta->sink;
    }
    const bool internal = meta != nullptr && produced_in_block_.count(meta->value_id) != 0;
    if (checkpointed &&
        !internal) {  // block-external: keep a reference (or a way to re-resolve) for the replay
      if (meta != nullptr && meta->rebind)
        e.rebinds[i] = meta->rebind;
      else
        e.kept_inputs[i] = t;
    }
  }
  for (Tensor& out : outputs) {
    if (!out.defined()) {
      e.output_ids.push_back(0);
      if (offload_kept_ > 0) e.output_storages.emplace_back();
      continue;
    }
    // A fresh TensorImpl: a node may return one of its inputs (or a view sharing its impl) unchanged.
    auto impl = std::make_shared<TensorImpl>(*out.impl());
    impl->autograd = std::make_shared<AutogradMeta>();
    impl->autograd->value_id = next_id();
    impl->autograd->requires_grad = true;
    e.output_ids.push_back(impl->autograd->value_id);
    if (open_segment_ >= 0) produced_in_block_.insert(impl->autograd->value_id);
    if (offload_kept_ > 0) e.output_storages.push_back(impl->storage);
    out = Tensor(std::move(impl));
  }
  if (evictable) {  // the inputs are saved by the node anyway: keeping them costs nothing
    e.kept_inputs = inputs;
    e.evictable = outputs;
  }
  e.node = std::move(node);
  entries_.push_back(std::move(e));
  return outputs;
}

void Tape::block_begin(int block) {
  if (block < 0) fail("block_begin({}): block indices start at 0", block);
  if (open_block_ >= 0)
    fail("block_begin({}) while block {} is open: blocks do not nest; call block_end({}) first", block,
         open_block_, open_block_);
  open_block_ = block;
  Segment seg;
  seg.block = block;
  seg.checkpointed = checkpoints_block(block);
  if (offload_kept_ > 0 && !seg.checkpointed) {
    const int64_t kept_index = block - (checkpoint_limit_ < 0 ? 0 : checkpoint_limit_);
    seg.offloads_kept = kept_index >= 0 && kept_index < offload_kept_;
  }
  seg.first = seg.last = entries_.size();
  segments_.push_back(seg);
  open_segment_ = static_cast<int>(segments_.size()) - 1;
}

void Tape::block_end(int block) {
  if (open_block_ != block) {
    if (open_block_ < 0) fail("block_end({}) without a matching block_begin({})", block, block);
    fail("block_end({}) while block {} is open: every block_begin(i) needs block_end(i)", block, open_block_);
  }
  Segment& seg = segments_[static_cast<size_t>(open_segment_)];
  seg.last = entries_.size();
  if (seg.first == seg.last)
    segments_.pop_back();  // nothing recorded (evaluation): forget the block
  else if (offload_inputs_ && seg.checkpointed)
    stash_inputs(seg);
  else if (!seg.checkpointed) {
    if (recompute_cheap_) evict_outputs(seg);
    if (seg.offloads_kept) stash_kept(seg);
  }
  if (!kept_pending_.empty()) release_kept(block);
  open_block_ = -1;
  open_segment_ = -1;
  produced_in_block_.clear();
}

void Tape::set_activation_offload(bool on, size_t min_bytes) {
  if (open_block_ >= 0) fail("set_activation_offload inside block {}", open_block_);
  if (!entries_.empty() && on != offload_inputs_)
    fail("set_activation_offload with a recorded forward: run backward or clear first");
  offload_inputs_ = on;
  if (!on && offload_kept_ == 0) {
    offload_.reset();
  } else if (on && (!offload_ || offload_->min_bytes() != min_bytes)) {
    if (!entries_.empty()) fail("set_activation_offload with a recorded forward: run backward or clear first");
    offload_ = std::make_unique<ActivationOffload>(min_bytes);
  }
}

void Tape::set_offload_kept_blocks(int64_t blocks, int64_t model_blocks, size_t min_bytes) {
  if (open_block_ >= 0) fail("set_offload_kept_blocks inside block {}", open_block_);
  if (!entries_.empty()) fail("set_offload_kept_blocks with a recorded forward: run backward or clear first");
  if (blocks < 0 || (blocks > 0 && model_blocks < 1))
    fail("set_offload_kept_blocks({}, {}): needs blocks >= 0 and the model's block count", blocks, model_blocks);
  offload_kept_ = blocks;
  offload_model_blocks_ = model_blocks;
  if (blocks > 0 && (!offload_ || (!offload_inputs_ && offload_->min_bytes() != min_bytes)))
    offload_ = std::make_unique<ActivationOffload>(min_bytes);
  else if (blocks == 0 && !offload_inputs_)
    offload_.reset();
}

void Tape::stash_kept(Segment& seg) {
  // What the block's nodes saved: the outputs of its entries that somebody still holds, and the block's input
  // (the output of the entry before it), but not the block's output, which the next block reads.
  if (seg.last == seg.first) return;
  std::unordered_set<const Storage*> skip;
  for (const auto& w : entries_[seg.last - 1].output_storages)
    if (auto st = w.lock()) skip.insert(st.get());
  const size_t from = seg.first > 0 ? seg.first - 1 : seg.first;
  for (size_t k = from; k + 1 < seg.last; ++k)
    for (const auto& w : entries_[k].output_storages) {
      std::shared_ptr<Storage> st = w.lock();
      if (!offload_->wants_storage(st.get())) continue;
      if (skip.count(st.get()) != 0 || offloaded_.count(st.get()) != 0) continue;
      const Storage* key = st.get();
      const int64_t ticket = offload_->stash_storage(std::move(st));
      offloaded_[key] = ticket;
      seg.kept_tickets.push_back(ticket);
    }
  if (!seg.kept_tickets.empty()) kept_pending_.push_back(static_cast<size_t>(&seg - segments_.data()));
}

void Tape::release_kept(int block) {
  // Held at most: L - 1 - block offloaded blocks after block_end(block) (none at the last), so that with the
  // kept blocks still to come the device never holds more than the kept blocks' activations at the end.
  const int64_t allowed = block < 0 ? 0 : std::max<int64_t>(0, offload_model_blocks_ - 1 - block);
  size_t done = 0;
  for (size_t i = 0; i < kept_pending_.size(); ++i) {
    Segment& seg = segments_[kept_pending_[i]];
    const bool due = static_cast<int64_t>(kept_pending_.size() - i) > allowed;
    bool all = true;
    for (int64_t t : seg.kept_tickets) {
      if (due || offload_->storage_copied(t))
        offload_->release_storage(t);
      else
        all = false;
    }
    if (all && done == i) ++done;
  }
  kept_pending_.erase(kept_pending_.begin(), kept_pending_.begin() + static_cast<std::ptrdiff_t>(done));
}

void Tape::restore_kept(Segment& seg) {
  for (int64_t t : seg.kept_tickets) offload_->restore_storage(t);
  seg.kept_tickets.clear();
}

void Tape::restore_offloaded(const Tensor& t) {
  auto it = offloaded_.find(t.impl()->storage.get());
  if (it == offloaded_.end()) return;  // released by something else: its own error when read
  offload_->restore_storage(it->second);
  offloaded_.erase(it);
}

void Tape::release_memo() {
  for (int64_t t : memo_pending_) offload_->release_storage(t);
  memo_pending_.clear();
}

void Tape::stash_inputs(Segment& seg) {
  // The previous block's copies have had a whole block to finish: let their device memory go.
  offload_->retire_in_flight();
  release_memo();
  std::unordered_map<const TensorImpl*, size_t> index;  // one copy per kept tensor, however many slots
  for (size_t k = seg.first; k < seg.last; ++k) {
    Entry& e = entries_[k];
    for (size_t i = 0; i < e.kept_inputs.size(); ++i) {
      Tensor& t = e.kept_inputs[i];
      // Only values of the tape (activations made by earlier blocks): a tensor off the tape is a frozen
      // weight or a constant that lives on regardless, and copying it out would only add a second copy back.
      if (e.input_ids[i] == 0 || !offload_->wants(t)) continue;
      auto [it, fresh] = index.emplace(t.impl(), seg.stashed.size());
      if (fresh) seg.stashed.push_back({offload_->stash(t), {}});
      seg.stashed[it->second].slots.emplace_back(k, i);
    }
  }
  for (const Stashed& s : seg.stashed)
    for (auto [k, i] : s.slots) entries_[k].kept_inputs[i] = Tensor();
  // Memoized results: whole storages, refilled in place before the replay (the node holds the handles).
  std::unordered_set<const Storage*> seen;
  for (size_t k = seg.first; k < seg.last; ++k) {
    if (!entries_[k].memoized) continue;
    for (const Tensor& t : entries_[k].node->memo()) {
      if (!t.defined()) continue;
      std::shared_ptr<Storage> st = t.impl()->storage;
      if (!offload_->wants_storage(st.get())) continue;
      if (!seen.insert(st.get()).second) continue;
      memo_stashed_ += static_cast<int64_t>(st->bytes());
      const int64_t ticket = offload_->stash_storage(std::move(st));
      seg.memo_tickets.push_back(ticket);
      memo_pending_.push_back(ticket);
    }
  }
}

void Tape::prefetch_inputs(const Segment& seg) {
  for (const Stashed& s : seg.stashed) offload_->prefetch(s.ticket);
  for (int64_t t : seg.memo_tickets) offload_->prefetch_storage(t);
}

void Tape::restore_inputs(Segment& seg) {
  for (const Stashed& s : seg.stashed) {
    const Tensor t = offload_->take(s.ticket);
    for (auto [k, i] : s.slots) entries_[k].kept_inputs[i] = t;
  }
  seg.stashed.clear();
  for (int64_t t : seg.memo_tickets) offload_->restore_storage(t);
  seg.memo_tickets.clear();
}

namespace {
constexpr const char* kEvictedWhy =
    "it is an activation that cheap recompute (train.recompute_cheap_ops) gave back after its block's forward, "
    "read by something other than a recorded op (only those get it recomputed first)";
}  // namespace

void Tape::evict_outputs(Segment& seg) {
  for (size_t k = seg.first; k < seg.last; ++k) {
    Entry& e = entries_[k];
    if (e.evictable.empty()) continue;
    bool any = false;
    for (size_t j = 0; j < e.evictable.size(); ++j) {
      Tensor& t = e.evictable[j];
      if (!t.defined() || e.output_ids[j] == 0) {
        t = Tensor();
        continue;
      }
      Storage& st = *t.impl()->storage;
      bool keep = st.borrowed() || st.released();  // not ours, or another output of the same memory
      for (const Tensor& in : e.kept_inputs)
        keep = keep || (in.defined() && in.impl()->storage.get() == &st);  // a view of an input
      if (keep) {
        t = Tensor();
        continue;
      }
      st.release_memory(kEvictedWhy);
      evicted_[e.output_ids[j]] = k;
      evicted_bytes_ += static_cast<int64_t>(st.bytes());
      any = true;
    }
    if (any) {
      seg.evicted = true;
    } else {
      e.evictable.clear();
      e.kept_inputs.clear();
    }
  }
}

void Tape::recompute(size_t entry) {
  Entry& e = entries_[entry];
  if (e.evictable.empty()) return;
  for (uint64_t id : e.input_ids)  // an input evicted by an earlier node (SwiGLU of a norm's output) first
    if (id != 0)
      if (auto it = evicted_.find(id); it != evicted_.end()) recompute(it->second);
  std::vector<Tensor> outs;
  {
    OpTimer timer(profile_device(e.kept_inputs), e.node->name(), "recompute");
    outs = e.node->forward(e.kept_inputs, /*save=*/false);
  }
  ++stats_.nodes_recomputed;
  if (outs.size() != e.evictable.size())
    fail("cheap recompute of node {} returned {} outputs, the recorded forward {}", e.node->name(), outs.size(),
         e.evictable.size());
  for (size_t j = 0; j < outs.size(); ++j) {
    Tensor& t = e.evictable[j];
    if (!t.defined()) continue;
    Storage& st = *t.impl()->storage;
    if (!st.released()) continue;
    const Tensor& o = outs[j];
    const std::shared_ptr<Storage>& os = o.impl()->storage;
    if (o.shape() == t.shape() && o.strides() == t.strides() && o.offset() == t.offset() && o.dtype() == t.dtype() &&
        os.use_count() == 1 && !os->borrowed() && os->bytes() == st.bytes() && &os->device() == &st.device()) {
      st.adopt_memory(*os);  // no copy: the recomputed memory becomes the original's
    } else {
      st.acquire_memory();
      t.copy_from(o);
    }
    evicted_.erase(e.output_ids[j]);
    evicted_bytes_ -= static_cast<int64_t>(st.bytes());
    stats_.bytes_recomputed += static_cast<int64_t>(st.bytes());
  }
  // Dropped now, so that the block's backward finds the saved tensors as it would without cheap recompute
  // (SwiGLU's backward writes over its gate and up only when nothing else holds them).
  e.evictable.clear();
  e.kept_inputs.clear();
}

void Tape::recompute_segment(const Segment& seg) {
  for (size_t k = seg.first; k < seg.last; ++k)
    if (!entries_[k].evictable.empty()) recompute(k);
}

void Tape::clear() {
  // Entries first: a storage that only their nodes held needs no copy back.
  entries_.clear();
  kept_pending_.clear();
  offloaded_.clear();
  memo_pending_.clear();
  memo_stashed_ = 0;
  if (offload_) offload_->reset();
  evicted_.clear();
  evicted_bytes_ = 0;
  entries_.clear();
  segments_.clear();
  open_block_ = -1;
  open_segment_ = -1;
  produced_in_block_.clear();
}

uint64_t Tape::next_id() {
  static std::atomic<uint64_t> last{0};
  return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

void Tape::configure_like(Tape& other) const {
  if (other.size() != 0 || other.open_block_ >= 0) fail("configure_like: the other tape is not empty");
  other.grad_enabled_ = grad_enabled_;
  other.checkpoint_limit_ = checkpoint_limit_;
  other.recompute_cheap_ = recompute_cheap_;
  other.replay_memo_ = replay_memo_;
  other.hooks_ = hooks_;
  if (offload_inputs_)
    other.set_activation_offload(true, offload_->min_bytes());
  else if (other.offload_inputs_)
    other.set_activation_offload(false);
  other.set_offload_kept_blocks(offload_kept_, offload_model_blocks_, min_offload_bytes());
}

void Tape::replay(const Segment& seg) {
  // Values produced by the block's nodes, keyed by their recorded ids, each dropped after its last use inside
  // the block (the nodes keep what their backward needs; a later block keeps its own reference to what it
  // takes from this one). Holding every value to the end of the replay kept a block's whole forward alive at
  // once: on an H200 the step's peak was reached there (ENGINE_PROFILE_MEMORY), with the intermediates of
  // LoRA's sum (the base output, the adapter's) that nothing saves.
  const auto from_values = [](const Entry& e, size_t i) {
    return !e.rebinds[i] && !e.kept_inputs[i].defined() && e.input_ids[i] != 0;
  };
  std::unordered_map<uint64_t, int64_t> uses;
  for (size_t k = seg.first; k < seg.last; ++k)
    for (size_t i = 0; i < entries_[k].input_ids.size(); ++i)
      if (from_values(entries_[k], i)) ++uses[entries_[k].input_ids[i]];
  std::unordered_map<uint64_t, Tensor> values;
  for (size_t k = seg.first; k < seg.last; ++k) {
    Entry& e = entries_[k];
    std::vector<Tensor> inputs(e.input_ids.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (e.rebinds[i]) {
        inputs[i] = e.rebinds[i]();
      } else if (e.kept_inputs[i].defined() || e.input_ids[i] == 0) {
        inputs[i] = e.kept_inputs[i];
      } else {
        auto it = values.find(e.input_ids[i]);
        if (it == values.end())
          fail(
              "checkpoint replay of block {}: node {} needs a value the block did not recompute "
              "(a tensor made inside the block was used without being recorded)",
              seg.block, e.node->name());
        inputs[i] = it->second;
      }
    }
    std::vector<Tensor> outs;
    {
      OpTimer timer(profile_device(inputs), e.node->name(), "replay");
      e.node->set_input_needs_grad(e.input_needs_grad);
      outs = e.node->forward(inputs, /*save=*/true);
    }
    ++stats_.nodes_replayed;
    if (e.memoized) ++stats_.nodes_from_memo;
    if (outs.size() != e.output_ids.size())
      fail("checkpoint replay of node {} returned {} outputs, the recorded forward {}", e.node->name(),
           outs.size(), e.output_ids.size());
    for (size_t i = 0; i < e.input_ids.size(); ++i)
      if (from_values(e, i) && --uses[e.input_ids[i]] == 0) values.erase(e.input_ids[i]);
    for (size_t j = 0; j < outs.size(); ++j)
      if (e.output_ids[j] != 0 && uses.count(e.output_ids[j]) != 0) values[e.output_ids[j]] = std::move(outs[j]);
    e.kept_inputs.clear();
    e.rebinds.clear();
  }
  ++stats_.blocks_replayed;
}

void Tape::backward(const Tensor& loss, const Tensor& grad) {
  if (open_block_ >= 0)
    fail("backward() inside block {}: call block_end({}) first", open_block_, open_block_);
  if (in_backward_) fail("backward() called from inside a backward pass");
  if (!requires_grad(loss))
    fail(
        "backward(): the loss does not require grad (it was computed with gradients disabled, or from no "
        "trainable parameter)");
  struct Finish {
    Tape& tape;
    ~Finish() {
      tape.in_backward_ = false;
      tape.clear();
    }
  } finish{*this};
  in_backward_ = true;
  stats_ = {};
  if (offload_) {
    offload_->retire_in_flight();
    release_memo();
    if (!kept_pending_.empty()) release_kept(-1);
    offloaded_last_ = offload_->stashed_bytes();
    offloaded_kept_last_ = offload_->stashed_storage_bytes() - memo_stashed_;
    offloaded_memo_last_ = memo_stashed_;
  }

  Tensor seed = grad;
  if (seed.defined()) {
    if (seed.shape() != loss.shape())
      fail("backward(): the gradient of shape {} does not match the loss of shape {}", seed.shape().str(),
           loss.shape().str());
  } else {
    seed = Tensor::full(loss.shape(), loss.dtype(), loss.device(), 1.0);
  }
  const AutogradMeta& loss_meta = *loss.impl()->autograd;
  if (loss_meta.sink) loss_meta.sink->accumulate(seed);  // the loss is itself a leaf
  std::unordered_map<uint64_t, Tensor> grads;
  grads[loss_meta.value_id] = seed;

  int active = -1;  // the segment being backpropagated
  // Kept-block offload: segments entered so far, offloaded segments brought back ahead and not yet reached,
  // and the highest segment not yet considered for that.
  int entered = 0, prefetched = 0;
  int next_prefetch = static_cast<int>(segments_.size()) - 1;
  auto leave = [&] {
    if (active >= 0 && hooks_ != nullptr)
      hooks_->after_block(segments_[static_cast<size_t>(active)].block, BlockPhase::Backward);
  };
  for (size_t k = entries_.size(); k-- > 0;) {
    Entry& e = entries_[k];
    if (e.segment != active) {
      leave();
      active = e.segment;
      if (active >= 0) {
        Segment& seg = segments_[static_cast<size_t>(active)];
        if (hooks_ != nullptr) hooks_->before_block(seg.block, BlockPhase::Backward);
        if (offload_kept_ > 0) {
          if (!seg.kept_tickets.empty()) {
            if (active > next_prefetch) --prefetched;  // it was brought back ahead
            restore_kept(seg);
          }
          // Offloaded blocks further down come back while backward works through the blocks above them, as
          // many at once as blocks backward has finished: each of those gave back about what one offloaded
          // block takes, so this adds nothing to the step's highest point (at backward's start), and the copies
          // get as long a lead as memory allows.
          for (int j = std::min(next_prefetch, active - 1); j >= 0 && prefetched < entered; --j) {
            next_prefetch = j - 1;
            const Segment& next = segments_[static_cast<size_t>(j)];
            if (next.kept_tickets.empty()) continue;
            for (int64_t t : next.kept_tickets) offload_->prefetch_storage(t);
            ++prefetched;
          }
        }
        ++entered;
        if (seg.checkpointed) {
          if (offload_inputs_) {
            restore_inputs(seg);
            // The next block backward reaches that kept inputs in host memory: its copy overlaps this one.
            for (int j = active - 1; j >= 0; --j)
              if (!segments_[static_cast<size_t>(j)].stashed.empty() ||
                  !segments_[static_cast<size_t>(j)].memo_tickets.empty()) {
                prefetch_inputs(segments_[static_cast<size_t>(j)]);
                break;
              }
          }
          replay(seg);
        } else if (seg.evicted) {
          recompute_segment(seg);
        }
      }
    }
    std::vector<Tensor> grad_outputs(e.output_ids.size());
    bool any = false;
    for (size_t j = 0; j < e.output_ids.size(); ++j) {
      auto it = grads.find(e.output_ids[j]);
      if (it == grads.end()) continue;
      grad_outputs[j] = std::move(it->second);
      grads.erase(it);  // each value is produced once: its gradient is complete and consumed here
      any = true;
    }
    if (!any) {  // nothing downstream of this node reaches the loss
      e.node.reset();
      e.kept_inputs.clear();
      e.rebinds.clear();
      continue;
    }
    std::vector<Tensor> grad_inputs;
    {
      OpTimer timer(profile_device(grad_outputs), e.node->name(), "backward");
      grad_inputs = e.node->backward(grad_outputs, e.input_needs_grad);
    }
    ++stats_.nodes_run;
    grad_outputs.clear();
    if (grad_inputs.size() != e.input_ids.size())
      fail("autograd: node {} returned {} input gradients for {} inputs", e.node->name(), grad_inputs.size(),
           e.input_ids.size());
    const std::string node_name = e.node->name();
    e.node->release_saved();
    e.node.reset();
    e.kept_inputs.clear();
    e.rebinds.clear();
    for (size_t i = 0; i < grad_inputs.size(); ++i) {
      if (!e.input_needs_grad[i] || !grad_inputs[i].defined()) continue;
      if (e.input_sinks[i]) {
      {
        OpTimer timer(OpProfile::instance().op_device(&grad_inputs[i].device()), "grad_sink",
                      "accumulate");
        e.input_sinks[i]->accumulate(grad_inputs[i]);
      }
      } else {
        Tensor& slot = grads[e.input_ids[i]];
        if (slot.defined() && slot.shape() != grad_inputs[i].shape())
          fail("autograd: node {} returned a gradient of shape {} for an input of shape {}", node_name,
               grad_inputs[i].shape().str(), slot.shape().str());
        slot = add_gradients(slot, grad_inputs[i]);
      }
    }
  }
  leave();
}

}  // namespace engine::rt
