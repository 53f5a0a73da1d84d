#include "engine/runtime/param_store.hpp"

#include <algorithm>

#include "engine/core/edit_distance.hpp"
#include "engine/core/error.hpp"
#include "engine/core/name_list.hpp"
#include "engine/runtime/kernel_table.hpp"
#include "engine/runtime/param_init.hpp"

namespace engine::rt {

ParamStore::ParamStore(Device& device, uint64_t seed) : device_(&device), seed_(seed) {}

ParamStore::~ParamStore() {
  for (auto& p : params_)
    if (p->quantizer != nullptr && p->quant_state != nullptr) p->quantizer->free_state(p->quant_state);
}

Param& ParamStore::declare(const ParamDecl& decl, int block) {
  if (decl.name.empty()) fail("a parameter needs a name");
  if (by_name_.count(decl.name)) fail("parameter '{}' is declared twice", decl.name);
  if (decl.shape.ndim < 0 || decl.shape.ndim > kMaxDims)
    fail("parameter '{}': rank {} is outside 0..{}", decl.name, decl.shape.ndim, kMaxDims);
  for (int i = 0; i < decl.shape.ndim; ++i)
    if (decl.shape[i] <= 0)
      fail("parameter '{}': shape {} has a non-positive dimension", decl.name, decl.shape.str());
  if (!dtype_is_float(decl.dtype))
    fail("parameter '{}': dtype {} is not a floating type (use f32, bf16 or f16)", decl.name,
         dtype_name(decl.dtype));
  if (decl.init > ENG_INIT_KAIMING_UNIFORM)
    fail("parameter '{}': unknown init kind {}", decl.name, decl.init);
  if (decl.init == ENG_INIT_KAIMING_UNIFORM && (decl.shape.ndim < 2 || decl.init_arg < 0))
    fail(
        "parameter '{}': kaiming_uniform needs a weight of rank >= 2 and init_arg >= 0 (5 as in nn.Linear), "
        "got shape {} and init_arg {}",
        decl.name, decl.shape.str(), decl.init_arg);
  auto p = std::make_unique<Param>();
  p->decl = decl;
  p->block = block;
  p->flags = decl.flags & ~static_cast<uint32_t>(ENG_PARAM_QUANTIZED | ENG_PARAM_HELD);
  const bool tied = (decl.flags & ENG_PARAM_TIED) != 0;
  if (tied != !decl.tied_to.empty())
    fail("parameter '{}': ENG_PARAM_TIED and tied_to go together (flag {}, tied_to '{}')", decl.name, tied,
         decl.tied_to);
  if (tied) {
    Param* target = find(decl.tied_to);
    if (target == nullptr)
      fail("parameter '{}' is tied to '{}', which is not declared (declare the tie target first)", decl.name,
           decl.tied_to);
    if (target->shape() != decl.shape)
      fail("parameter '{}' of shape {} is tied to '{}' of shape {}", decl.name, decl.shape.str(),
           decl.tied_to, target->shape().str());
    p->root = target->root;
  }
  Param& ref = *p;
  by_name_[decl.name] = p.get();
  params_.push_back(std::move(p));
  return ref;
}

Param* ParamStore::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

Param& ParamStore::get(const std::string& name) const {
  if (Param* p = find(name)) return *p;
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& p : params_)
    scored.emplace_back(edit_distance(name, p->name(), Transposition::kTwoEdits), p->name());
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> close;
  for (size_t i = 0; i < scored.size() && i < 3; ++i) close.push_back(scored[i].second);
  fail_with(ENG_ERR_NOT_FOUND, "no parameter named '{}' among {} parameters{}{}", name, params_.size(),
            close.empty() ? "" : "; closest: ", name_list(close));
}

DType ParamStore::storage_dtype(const Param& root) const {
  return (root.flags & ENG_PARAM_TRAINABLE) ? ENG_F32 : root.decl.dtype;
}

void ParamStore::materialize(Param& root) {
  if (root.value.defined() || root.quant_state != nullptr || root.placement.held.remote) return;
  Tensor init = initial_value(root.decl, seed_, storage_dtype(root), device_of(root));
  if (root.quantizer != nullptr) {
    root.quant_state = root.quantizer->quantize(root, init);
  } else {
    root.value = std::move(init);
  }
}

void ParamStore::set_device(Param& p, Device& device) {
  if (p.tied()) fail("set_device: parameter '{}' is tied to '{}': place its root", p.name(), p.root->name());
  Placement& pl = p.placement;
  if (p.quantizer != nullptr)
    fail_with(ENG_ERR_UNSUPPORTED,
              "parameter '{}' is held quantized by the {} quantizer: placing quantized base weights on several "
              "devices is not implemented; drop [quantizer] or train on one device",
              p.name(), p.quantizer->name());
  if (pl.flat != nullptr || pl.split.dim >= 0 || pl.held.holder >= 0)
    fail("set_device: parameter '{}' is already placed as a shard, a split or on one pipeline stage", p.name());
  pl.device = &device == device_ ? nullptr : &device;
  if (p.value.defined() && &p.value.device() != &device) p.value = p.value.to_device(device);
  if (p.grad) fail("set_device: parameter '{}' has a gradient already (place parameters before training)", p.name());
}

Tensor& ParamStore::value(Param& p) {
  Param& root = *p.root;
  if (root.quantizer != nullptr)
    fail_with(
        ENG_ERR_UNSUPPORTED,
        "parameter '{}' is held quantized by the {} quantizer: it has no dense value (dequantize it instead)",
        p.name(), root.quantizer->name());
  if (root.placement.held.remote && !root.placement.held.gathered)
    fail(
        "parameter '{}' is held by rank {} of the pipeline (another stage's block uses it), not by this rank: it "
        "is only valid here between a gather and a release (an engine bug: a use outside its stage)",
        p.name(), root.placement.held.holder);
  if (root.placement.applied()) {
    gather(root);  // on demand (the strategy's hooks gather ahead of use; this keeps any other use correct)
    return root.value;
  }
  materialize(root);
  return root.value;
}

GradSink& ParamStore::grad_sink(Param& p) {
  Param& root = *p.root;
  if (!root.grad) root.grad = std::make_shared<GradSink>(root.compute_shape(), ENG_F32, device_of(root));
  return *root.grad;
}

Tensor ParamStore::use(Param& p, Tape& tape) {
  Tensor& v = value(p);
  if (!p.trainable()) return v;
  grad_sink(p);
  // Checkpointed blocks re-resolve the value at replay (after the strategy's backward hook re-gathered it).
  return tape.leaf(v, p.root->grad, [this, &p] { return value(p); });
}

Tensor ParamStore::grad(const Param& p) const { return p.root->grad ? p.root->grad->grad() : Tensor(); }

void ParamStore::set_trainable(Param& p, bool trainable) {
  Param& root = *p.root;
  if (trainable == ((root.flags & ENG_PARAM_TRAINABLE) != 0)) return;
  if (root.sharded() || root.split() || root.held_by_one())
    fail(
        "parameter '{}' is placed as a shard by the parallel strategy; its trainability cannot change after "
        "placement (set it before the strategy's setup)",
        p.name());
  if (trainable && root.quantizer != nullptr)
    fail(
        "parameter '{}' is quantized by {} and cannot be trained: quantized weights take no gradient "
        "(train an adapter on it, or drop the quantizer)",
        p.name(), root.quantizer->name());
  if (trainable)
    root.flags |= ENG_PARAM_TRAINABLE;
  else
    root.flags &= ~static_cast<uint32_t>(ENG_PARAM_TRAINABLE);
  for (auto& other : params_)  // ties follow their root
    if (other->root == &root)
      other->flags = (other->flags & ~ENG_PARAM_TRAINABLE) | (root.flags & ENG_PARAM_TRAINABLE);
  if (root.value.defined() && root.value.dtype() != storage_dtype(root))
    root.value = root.value.to(storage_dtype(root));
  if (!trainable) root.grad.reset();
}

void ParamStore::zero_grads() {
  for (auto& p : params_) {
    if (p->root != p.get()) continue;
    if (p->grad) p->grad->zero();
    FlatShards* f = p->placement.flat.get();
    if (f != nullptr && f->local_grad.defined()) f->local_grad_zero_pending = true;
  }
}

void ParamStore::clear_grads() {
  for (auto& p : params_) {
    if (p->root != p.get()) continue;
    if (p->grad) p->grad->clear();
    if (FlatShards* f = p->placement.flat.get()) {
      f->local_grad = Tensor();
      f->local_grad_zero_pending = false;
    }
  }
}

void ParamStore::assign_quantizer(Quantizer& q) {
  std::vector<std::string> trainable;
  std::vector<Param*> taken;
  for (auto& p : params_) {
    if (p->root != p.get() || p->quantizer != nullptr || !q.takes(*p)) continue;
    if (p->flags & ENG_PARAM_TRAINABLE) trainable.push_back(p->name());
    taken.push_back(p.get());
  }
  if (!trainable.empty())
    fail(
        "the {} quantizer takes trainable parameters ({}): quantized weights take no gradient; "
        "freeze them (a PEFT method does) or use no quantizer",
        q.name(), name_list(trainable));
  for (Param* p : taken) {
    p->quantizer = &q;
    p->flags |= ENG_PARAM_QUANTIZED;
    if (p->value.defined()) {
      p->quant_state = q.quantize(*p, p->value);
      p->value = Tensor();
    }
  }
}

void ParamStore::release_quantizer(Quantizer& q) noexcept {
  for (auto& p : params_) {
    if (p->quantizer != &q) continue;
    if (p->quant_state != nullptr) q.free_state(p->quant_state);
    p->quant_state = nullptr;
    p->quantizer = nullptr;
    p->flags &= ~static_cast<uint32_t>(ENG_PARAM_QUANTIZED);
  }
}

void ParamStore::materialize_all() {
  for (auto& p : params_)
    if (p->root == p.get()) materialize(*p);
}

// ---- placement ------------------------------------------------------------------------------------------

void ParamStore::set_local(Param& p, int64_t shard) {
  Param& root = *p.root;
  if (p.tied()) fail("parameter '{}' is tied to '{}': place its root instead", p.name(), root.name());
  if (root.sharded())
    fail("parameter '{}' is already placed; placement is decided once, at the strategy's setup", p.name());
  if (shard < 0) fail("parameter '{}': a shard of {} elements is negative", p.name(), shard);
  if (shard == 0) return;  // whole on every rank
  const int64_t n = root.shape().numel();
  if (shard * world() < n)
    fail(
        "parameter '{}': {} ranks x a shard of {} elements cannot hold its {} elements (the shard must be at "
        "least ceil(numel / world) = {})",
        p.name(), world(), shard, n, (n + world() - 1) / world());
  if (root.quantizer != nullptr)
    fail_with(ENG_ERR_UNSUPPORTED,
              "parameter '{}' is held quantized by {}: sharding quantized weights is not implemented (the "
              "strategy lacks ENG_PAR_CAP_QUANTIZED); drop the quantizer or use ddp/zero2",
              p.name(), root.quantizer->name());
  auto f = std::make_shared<FlatShards>();
  f->members = {&root};
  f->offsets = {0};
  f->numel = n;
  f->shard = shard;
  f->dtype = storage_dtype(root);
  root.placement.flat = std::move(f);
  root.placement.member = 0;
}

void ParamStore::set_local_flat(const std::vector<Param*>& members) {
  if (members.empty()) fail("set_local_flat: no parameters");
  auto f = std::make_shared<FlatShards>();
  const Param& first = *members.front();
  f->dtype = storage_dtype(first);
  for (Param* p : members) {
    if (p->tied()) fail("parameter '{}' is tied to '{}': place its root instead", p->name(), p->root->name());
    if (p->sharded())
      fail("parameter '{}' is already placed; placement is decided once, at the strategy's setup", p->name());
    if (std::find(f->members.begin(), f->members.end(), p) != f->members.end())
      fail("parameter '{}' is listed twice for one flat buffer", p->name());
    if (p->quantizer != nullptr)
      fail_with(ENG_ERR_UNSUPPORTED,
                "parameter '{}' is held quantized by {}: sharding quantized weights is not implemented (the "
                "strategy lacks ENG_PAR_CAP_QUANTIZED); drop the quantizer or use ddp/zero2",
                p->name(), p->quantizer->name());
    if (storage_dtype(*p) != f->dtype || p->trainable() != first.trainable())
      fail(
          "parameters '{}' ({}, {}) and '{}' ({}, {}) cannot share one flat buffer: its members need one storage "
          "dtype and the same trainability (group them by dtype and trainability)",
          first.name(), dtype_name(f->dtype), first.trainable() ? "trainable" : "frozen", p->name(),
          dtype_name(storage_dtype(*p)), p->trainable() ? "trainable" : "frozen");
    f->members.push_back(p);
    f->offsets.push_back(f->numel);
    f->numel += p->shape().numel();
  }
  f->shard = std::max<int64_t>(1, (f->numel + world() - 1) / world());
  for (size_t i = 0; i < f->members.size(); ++i) {
    f->members[i]->placement.flat = f;
    f->members[i]->placement.member = i;
  }
}

void ParamStore::set_split(Param& p, int dim) {
  Param& root = *p.root;
  if (p.tied()) fail("parameter '{}' is tied to '{}': place its root instead", p.name(), root.name());
  if (root.sharded() || root.split())
    fail("parameter '{}' is already placed; placement is decided once, at the strategy's setup", p.name());
  const Dims& shape = root.shape();
  if (dim != 0 && dim != 1)
    fail("parameter '{}': a split along dimension {} is not supported (0: output features, 1: input features)",
         p.name(), dim);
  if (dim >= shape.ndim || (dim == 1 && shape.ndim != 2))
    fail("parameter '{}' of shape {} cannot be split along dimension {} (dim 1 splits need a 2-d weight)",
         p.name(), shape.str(), dim);
  // Divisibility by the split group is checked again when the placement applies (the group may be set later).
  if (shape[dim] % split_world() != 0)
    fail_with(ENG_ERR_INVALID_ARGUMENT,
              "parameter '{}' of shape {} cannot be split into {} equal slices along dimension {} ({} is not a "
              "multiple of {}): choose a world size that divides it",
              p.name(), shape.str(), split_world(), dim, shape[dim], split_world());
  if (root.quantizer != nullptr)
    fail_with(ENG_ERR_UNSUPPORTED,
              "parameter '{}' is held quantized by {}: splitting quantized weights is not implemented (the "
              "strategy lacks ENG_PAR_CAP_QUANTIZED); drop the quantizer or use ddp",
              p.name(), root.quantizer->name());
  root.placement.split.dim = dim;
}

void ParamStore::set_holder(Param& p, int holder) {
  Param& root = *p.root;
  if (p.tied()) fail("parameter '{}' is tied to '{}': place its root instead", p.name(), root.name());
  if (root.sharded() || root.split() || root.held_by_one())
    fail("parameter '{}' is already placed; placement is decided once, at the strategy's setup", p.name());
  if (holder < 0 || holder >= split_world())
    fail_with(ENG_ERR_INVALID_ARGUMENT, "parameter '{}': holder {} is not a rank of the {}-rank model group",
              p.name(), holder, split_world());
  if (root.quantizer != nullptr)
    fail_with(ENG_ERR_UNSUPPORTED,
              "parameter '{}' is held quantized by {}: placing quantized weights on one pipeline stage is not "
              "implemented (the strategy lacks ENG_PAR_CAP_QUANTIZED); drop the quantizer or use ddp",
              p.name(), root.quantizer->name());
  Held& h = root.placement.held;
  h.holder = holder;
  h.remote = holder != split_rank();
  if (h.remote) {  // what was materialised already (an initialised adapter) is dropped: the holder keeps it
    root.value = Tensor();
    root.loaded = false;
  }
}

bool ParamStore::any_held() const {
  return std::any_of(params_.begin(), params_.end(), [](const auto& p) { return p->held_by_one(); });
}

bool ParamStore::any_split() const {
  return std::any_of(params_.begin(), params_.end(), [](const auto& p) { return p->split(); });
}

std::pair<int64_t, int64_t> ParamStore::local_range(const Param& p) const {
  const Placement& pl = p.root->placement;
  if (!pl.flat) return {0, p.shape().numel()};
  const FlatShards& f = *pl.flat;
  const int64_t first = f.shard * rank();
  if (f.members.size() == 1) return {first, first + f.shard};  // zero3: the shard, padding included
  const int64_t off = f.offsets[pl.member], n = p.shape().numel();
  const int64_t begin = std::clamp<int64_t>(first - off, 0, n);
  const int64_t end = std::clamp<int64_t>(first + f.shard - off, 0, n);
  if (end <= begin) return {0, 0};  // none of p lies in this rank's shard
  return {begin, end};
}

void ParamStore::apply_placement() {
  for (auto& up : params_) {
    Param& root = *up;
    Split& sp = root.placement.split;
    if (root.root == &root && sp.dim >= 0 && !sp.applied) {
      if (root.quantizer != nullptr)
        fail_with(ENG_ERR_UNSUPPORTED, "parameter '{}' was quantized after its placement as a split", root.name());
      if (root.shape()[sp.dim] % split_world() != 0)
        fail_with(ENG_ERR_INVALID_ARGUMENT,
                  "parameter '{}' of shape {} cannot be split into {} equal slices along dimension {}: choose a "
                  "tensor-parallel size that divides {}",
                  root.name(), root.shape().str(), split_world(), sp.dim, root.shape()[sp.dim]);
      materialize(root);
      const int64_t n = root.shape()[sp.dim] / split_world();
      root.value = root.value.sliced(sp.dim, n * split_rank(), n * (split_rank() + 1)).contiguous().clone();
      sp.applied = true;
      continue;
    }
    if (root.root != &root || !root.sharded() || root.placement.flat->applied) continue;
    FlatShards& f = *root.placement.flat;
    for (Param* m : f.members) {
      if (m->quantizer != nullptr)
        fail_with(ENG_ERR_UNSUPPORTED, "parameter '{}' was quantized after its placement as a shard", m->name());
      materialize(*m);
      if (m->value.dtype() != f.dtype)
        fail("parameter '{}' changed its dtype to {} after its placement as a {} shard", m->name(),
             dtype_name(m->value.dtype()), dtype_name(f.dtype));
    }
    f.full = Tensor::zeros(Dims{f.shard * world()}, f.dtype, *device_);
    for (size_t i = 0; i < f.members.size(); ++i) {
      Param& m = *f.members[i];
      const int64_t n = m.shape().numel(), off = f.offsets[i];
      f.full.sliced(0, off, off + n).copy_from(m.value.contiguous().view(Dims{n}));
      m.value = f.full.sliced(0, off, off + n).view(m.shape());
    }
    const int64_t first = f.shard * rank();
    f.local = f.full.sliced(0, first, first + f.shard).clone();
    f.applied = true;
    f.gathered = true;
    release(root);
  }
}

bool ParamStore::any_sharded() const {
  return std::any_of(params_.begin(), params_.end(), [](const auto& p) { return p->sharded(); });
}

// A split root's whole tensor: every rank's slice all-gathered (rank order) and laid out along the split dim.
void ParamStore::gather_split(Param& root) {
  Split& sp = root.placement.split;
  if (!sp.applied || sp.gathered) return;
  const Tensor local = root.value.contiguous();
  const int64_t n = local.numel();
  Tensor buf = Tensor::empty(Dims{n * split_world()}, local.dtype(), *device_);
  if (split_comm() != nullptr)
    split_comm()->all_gather(local, buf);
  else
    buf.copy_from(local.view(Dims{n}));
  Tensor full;
  if (sp.dim == 0) {
    full = buf.view(root.shape());
  } else {
    full = Tensor::empty(root.shape(), local.dtype(), *device_);
    const int64_t rows = local.dim(0), cols = local.dim(1);
    for (int r = 0; r < split_world(); ++r)
      full.sliced(1, r * cols, (r + 1) * cols).copy_from(buf.sliced(0, r * n, (r + 1) * n).view(Dims{rows, cols}));
  }
  sp.local = root.value;
  root.value = full;
  sp.gathered = true;
}

void ParamStore::gather(Param& p) {
  if (p.root->placement.split.dim >= 0) return gather_split(*p.root);
  if (Held& h = p.root->placement.held; h.holder >= 0) {
    if (h.gathered) return;
    if (pinned_)
      fail("parameter '{}' is not gathered while the store is pinned (an engine bug: pin_weights missed it)",
           p.name());
    Param& root = *p.root;
    if (h.remote)
      root.value = Tensor::empty(root.shape(), storage_dtype(root), *device_);
    else
      materialize(root);
    if (split_comm() != nullptr) split_comm()->broadcast(root.value, h.holder);
    h.gathered = true;
    return;
  }
  if (!p.root->placement.applied()) return;
  FlatShards& f = *p.root->placement.flat;
  if (f.gathered) return;
  if (pinned_)
    fail(
        "parameter '{}' is not gathered while the store is pinned (rank 0 saving or evaluating alone): it "
        "would need a collective the other ranks do not join (an engine bug: pin_weights missed it)",
        p.name());
  f.full.impl()->storage->acquire_memory();
  if (comm_ != nullptr)
    comm_->all_gather(f.local, f.full);
  else
    f.full.copy_from(f.local);
  f.gathered = true;
}

void ParamStore::release(Param& p) {
  if (Held& h = p.root->placement.held; h.holder >= 0) {
    if (!h.gathered || pinned_) return;
    if (h.remote) p.root->value = Tensor();
    h.gathered = false;
    return;
  }
  if (Split& sp = p.root->placement.split; sp.gathered && !pinned_) {
    p.root->value = sp.local;
    sp.local = Tensor();
    sp.gathered = false;
    return;
  }
  if (!p.root->placement.applied()) return;
  FlatShards& f = *p.root->placement.flat;
  if (!f.gathered || pinned_) return;
  f.full.impl()->storage->release_memory();
  f.gathered = false;
}

void ParamStore::refresh_local(Param& p) {
  if (Split& sp = p.root->placement.split; sp.gathered) {
    const int64_t n = p.root->shape()[sp.dim] / split_world();
    sp.local.copy_from(p.root->value.sliced(sp.dim, n * split_rank(), n * (split_rank() + 1)));
    return;
  }
  if (!p.root->placement.applied()) return;
  FlatShards& f = *p.root->placement.flat;
  if (!f.gathered) return;
  const int64_t first = f.shard * rank();
  f.local.copy_from(f.full.sliced(0, first, first + f.shard));
}

void ParamStore::reduce_grad(Param& p) {
  Param& root = *p.root;
  if (!root.placement.applied()) fail("reduce_grad('{}'): the parameter is not placed as a shard", p.name());
  if (!root.trainable()) fail("reduce_grad('{}'): the parameter is frozen (it has no gradient)", p.name());
  FlatShards& f = *root.placement.flat;
  const int64_t total = f.shard * world();
  Tensor padded;
  Tensor g0 = grad(*f.members.front());
  if (f.members.size() == 1 && g0.defined() && total == f.numel) {
    padded = g0.contiguous().view(Dims{total});
  } else {
    padded = Tensor::zeros(Dims{total}, ENG_F32, *device_);
    for (size_t i = 0; i < f.members.size(); ++i) {
      Tensor g = grad(*f.members[i]);
      const int64_t n = g.defined() ? g.numel() : 0, off = f.offsets[i];
      if (n > 0) padded.sliced(0, off, off + n).copy_from(g.contiguous().view(Dims{n}));
    }
  }
  Tensor mine = Tensor::empty(Dims{f.shard}, ENG_F32, *device_);
  if (comm_ != nullptr)
    comm_->reduce_scatter_sum(padded, mine);
  else
    mine.copy_from(padded);
  if (!f.local_grad.defined()) {
    f.local_grad = std::move(mine);
  } else if (f.local_grad_zero_pending) {
    f.local_grad.copy_from(mine);
  } else {
    device_->kernels().axpby(f.local_grad, 1.0, mine, 1.0);
  }
  f.local_grad_zero_pending = false;
  for (Param* m : f.members)
    if (m->grad) m->grad->clear();
}

namespace {
// Member `p`'s part of a flat buffer's local slice `t` (shard elements): its elements [begin, end) of
// local_range, which lie at [off + begin - first, off + end - first) of the slice.
Tensor member_part(const FlatShards& f, size_t member, std::pair<int64_t, int64_t> range, int64_t first,
                   const Tensor& t) {
  if (f.members.size() == 1) return t;
  if (range.second == range.first) return t.sliced(0, 0, 0);  // none of this member lies in the shard
  const int64_t at = f.offsets[member] + range.first - first;
  return t.sliced(0, at, at + (range.second - range.first));
}
}  // namespace

Tensor ParamStore::local(Param& p) {
  Param& root = *p.root;
  if (!root.placement.applied()) return value(root);
  const FlatShards& f = *root.placement.flat;
  return member_part(f, root.placement.member, local_range(root), f.shard * rank(), f.local);
}

Tensor ParamStore::local_grad(const Param& p) const {
  const Param& root = *p.root;
  if (!root.placement.applied()) return grad(root);
  FlatShards& f = *root.placement.flat;
  if (!f.local_grad.defined()) return Tensor();
  if (f.local_grad_zero_pending) {
    device_->fill_zero(f.local_grad.raw_data(), f.local_grad.nbytes());
    f.local_grad_zero_pending = false;
  }
  return member_part(f, root.placement.member, local_range(root), f.shard * rank(), f.local_grad);
}

int64_t ParamStore::local_param_bytes() const {
  int64_t bytes = 0;
  for (const auto& p : params_) {
    if (p->root != p.get()) continue;
    const FlatShards* f = p->placement.flat.get();
    if (f != nullptr && f->applied) {
      if (f->members.front() == p.get()) bytes += static_cast<int64_t>(f->local.nbytes());  // once per buffer
    } else if (p->value.defined())
      bytes += static_cast<int64_t>(p->value.nbytes());
  }
  return bytes;
}

int64_t ParamStore::numel(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& p : params_)
    if (p->root == p.get() && (!trainable_only || (p->flags & ENG_PARAM_TRAINABLE))) n += p->shape().numel();
  return n;
}

}  // namespace engine::rt
