#include "engine/runtime/param_store.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "engine/core/error.hpp"
#include "engine/runtime/param_init.hpp"

namespace engine::rt {

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// "a, b, c and 7 more"
std::string name_list(const std::vector<std::string>& names, size_t max_shown = 8) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < max_shown; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > max_shown) s += fmt::format(" and {} more", names.size() - max_shown);
  return s;
}

}  // namespace

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
        "got "
        "shape {} and init_arg {}",
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
  for (const auto& p : params_) scored.emplace_back(edit_distance(name, p->name()), p->name());
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> close;
  for (size_t i = 0; i < scored.size() && i < 3; ++i) close.push_back(scored[i].second);
  fail_with(ENG_ERR_NOT_FOUND, "no parameter named '{}' among {} parameters{}{}", name, params_.size(),
            close.empty() ? "" : "; closest: ", name_list(close));
}

DType ParamStore::storage_dtype(const Param& root) const {
  return (root.flags & ENG_PARAM_TRAINABLE) ? ENG_F32 : root.decl.dtype;
}

Tensor ParamStore::initial_value(const Param& root) const {
  const ParamDecl& d = root.decl;
  const int64_t n = d.shape.numel();
  std::vector<double> v(static_cast<size_t>(n));
  initial_values(d, seed_, 0, v);  // param_init.hpp: the one definition of every init kind
  Tensor host = Tensor::from_vector(d.shape, ENG_F64, cpu_device(), v);
  Tensor out = Tensor::empty(d.shape, storage_dtype(root), *device_);
  out.copy_from(host.to_device(*device_));
  return out;
}

void ParamStore::materialize(Param& root) {
  if (root.value.defined() || root.quant_state != nullptr) return;
  Tensor init = initial_value(root);
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
        "parameter '{}' is quantized by {} and cannot be trained: quantized weights take no gradient (train "
        "an "
        "adapter on it, or drop the quantizer)",
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
        "the {} quantizer takes trainable parameters ({}): quantized weights take no gradient; freeze them "
        "(a PEFT "
        "method does) or use no quantizer",
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

LoadReport ParamStore::load(const std::vector<std::string>& source_names,
                            const std::function<bool(const std::string&, Tensor&)>& read,
                            const LoadOptions& options) {
  LoadReport report;
  std::set<std::string> in_source(source_names.begin(), source_names.end());
  std::vector<Param*> expected;
  for (auto& p : params_) {
    const bool skip = p->tied() || (p->decl.flags & ENG_PARAM_NOT_SAVED) || p->decl.role == ENG_ROLE_ADAPTER;
    if (skip) continue;
    expected.push_back(p.get());
    if (!in_source.count(p->name())) report.missing.push_back(p->name());
  }
  for (const std::string& name : source_names)
    if (!by_name_.count(name)) report.unexpected.push_back(name);
  const bool bad_missing = !report.missing.empty() && !options.allow_missing;
  const bool bad_unexpected = !report.unexpected.empty() && !options.allow_unexpected;
  if (bad_missing || bad_unexpected) {
    std::string msg = "the checkpoint does not match the model's parameters:";
    if (bad_missing) msg += fmt::format(" missing {} ({})", report.missing.size(), name_list(report.missing));
    if (bad_missing && bad_unexpected) msg += ";";
    if (bad_unexpected)
      msg += fmt::format(" unexpected {} ({})", report.unexpected.size(), name_list(report.unexpected));
    msg += ". Check that the model plugin matches the checkpoint's architecture (config.json).";
    fail_with(ENG_ERR_NOT_FOUND, "{}", msg);
  }
  for (Param* p : expected) {
    if (!in_source.count(p->name())) continue;
    if (p->quantizer != nullptr) {
      if (p->quant_state != nullptr) {
        p->quantizer->free_state(p->quant_state);
        p->quant_state = nullptr;
      }
      Tensor full = Tensor::empty(p->shape(), p->decl.dtype, *device_);
      if (!read(p->name(), full))
        fail_with(ENG_ERR_IO, "could not read parameter '{}' from the checkpoint", p->name());
      p->quant_state = p->quantizer->quantize(*p, full);
    } else {
      if (!p->value.defined()) p->value = Tensor::empty(p->shape(), storage_dtype(*p), *device_);
      if (!read(p->name(), p->value))
        fail_with(ENG_ERR_IO, "could not read parameter '{}' from the checkpoint", p->name());
    }
    p->loaded = true;
    report.loaded.push_back(p->name());
  }
  return report;
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
