#include "engine/runtime/param_store.hpp"

#include <algorithm>

#include "engine/core/edit_distance.hpp"
#include "engine/core/error.hpp"
#include "engine/core/name_list.hpp"
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
  p->flags = decl.flags & ~static_cast<uint32_t>(ENG_PARAM_QUANTIZED);
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
  if (root.value.defined() || root.quant_state != nullptr) return;
  Tensor init = initial_value(root.decl, seed_, storage_dtype(root), *device_);
  if (root.quantizer != nullptr) {
    root.quant_state = root.quantizer->quantize(root, init);
  } else {
    root.value = std::move(init);
  }
}

Tensor& ParamStore::value(Param& p) {
  Param& root = *p.root;
  if (root.quantizer != nullptr)
    fail_with(
        ENG_ERR_UNSUPPORTED,
        "parameter '{}' is held quantized by the {} quantizer: it has no dense value (dequantize it instead)",
        p.name(), root.quantizer->name());
  materialize(root);
  return root.value;
}

GradSink& ParamStore::grad_sink(Param& p) {
  Param& root = *p.root;
  if (!root.grad) root.grad = std::make_shared<GradSink>(root.shape(), ENG_F32, *device_);
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
  for (auto& p : params_)
    if (p->root == p.get() && p->grad) p->grad->zero();
}

void ParamStore::clear_grads() {
  for (auto& p : params_)
    if (p->root == p.get() && p->grad) p->grad->clear();
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

int64_t ParamStore::numel(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& p : params_)
    if (p->root == p.get() && (!trainable_only || (p->flags & ENG_PARAM_TRAINABLE))) n += p->shape().numel();
  return n;
}

}  // namespace engine::rt
