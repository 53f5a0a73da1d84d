#include "engine/host/custom_op_node.hpp"

#include <cstring>

#include "engine/core/error.hpp"
#include "engine/host/tensor_handle.hpp"

namespace engine::host {

namespace {

std::vector<OwnedHandle> wrap_all(const std::vector<rt::Tensor>& ts) {
  std::vector<OwnedHandle> hs;
  hs.reserve(ts.size());
  for (const rt::Tensor& t : ts) hs.emplace_back(t);
  return hs;
}

std::vector<eng_tensor> raw(const std::vector<OwnedHandle>& hs) {
  std::vector<eng_tensor> r;
  r.reserve(hs.size());
  for (const OwnedHandle& h : hs) r.push_back(h.get());
  return r;
}

}  // namespace

CustomOpNode::CustomOpNode(HostSession& session, const CustomOpDef& def, const void* attrs)
    : session_(&session), def_(&def) {
  if (def.op.attrs_size > 0) {
    if (attrs == nullptr)
      fail("custom op '{}' expects {} bytes of attributes but got NULL", def.name, def.op.attrs_size);
    attrs_.resize(def.op.attrs_size);
    std::memcpy(attrs_.data(), attrs, def.op.attrs_size);
  }
}

std::vector<rt::Tensor> CustomOpNode::forward(const std::vector<rt::Tensor>& inputs, bool save) {
  const eng_custom_op& op = def_->op;
  if (inputs.size() != static_cast<size_t>(op.n_inputs))
    fail("custom op '{}' takes {} inputs, got {}", def_->name, op.n_inputs, inputs.size());
  std::vector<OwnedHandle> in = wrap_all(inputs);
  std::vector<eng_tensor> in_raw = raw(in);
  std::vector<OwnedHandle> out(static_cast<size_t>(op.n_outputs));
  std::vector<eng_tensor> out_raw(out.size(), nullptr);
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  eng_status st =
      op.forward(op.self, &ctx, in_raw.data(), attrs_.empty() ? nullptr : attrs_.data(), out_raw.data());
  for (size_t i = 0; i < out.size(); ++i) out[i] = OwnedHandle(out_raw[i]);  // take ownership either way
  if (st != ENG_OK)
    throw Error(fmt::format("custom op '{}' forward failed: {}", def_->name, session_->error()), st);
  std::vector<rt::Tensor> result;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].get() == nullptr)
      fail("custom op '{}' forward returned no tensor for output {}", def_->name, i);
    result.push_back(out[i].get()->tensor);
  }
  if (save) {
    const auto meta = [](const std::vector<rt::Tensor>& ts) {
      std::vector<Meta> m;
      for (const rt::Tensor& t : ts)
        m.push_back(t.defined() ? Meta{t.shape(), t.dtype(), &t.device()} : Meta{});
      return m;
    };
    input_meta_ = meta(inputs);
    output_meta_ = meta(result);
    if ((op.flags & ENG_CUSTOM_OP_BACKWARD_NO_INPUTS) == 0) inputs_ = inputs;
    if ((op.flags & ENG_CUSTOM_OP_BACKWARD_NO_OUTPUTS) == 0) outputs_ = result;
  }
  return result;
}

std::vector<rt::Tensor> CustomOpNode::backward(const std::vector<rt::Tensor>& grad_outputs,
                                               const std::vector<bool>& needs_grad) {
  const eng_custom_op& op = def_->op;
  // Values the op's flags say backward does not read were not kept: NULL handles in their place.
  std::vector<OwnedHandle> in = wrap_all(inputs_), out = wrap_all(outputs_);
  std::vector<eng_tensor> in_raw = raw(in), out_raw = raw(out);
  in_raw.resize(input_meta_.size(), nullptr);
  out_raw.resize(output_meta_.size(), nullptr);
  // Absent output gradients are passed as zeros so that plugin backward code needs no NULL checks.
  std::vector<rt::Tensor> grads(output_meta_.size());
  for (size_t j = 0; j < output_meta_.size(); ++j)
    grads[j] = j < grad_outputs.size() && grad_outputs[j].defined()
                   ? grad_outputs[j]
                   : rt::Tensor::zeros(output_meta_[j].shape, output_meta_[j].dtype, *output_meta_[j].device);
  std::vector<OwnedHandle> g = wrap_all(grads);
  std::vector<int32_t> needs(needs_grad.size());
  for (size_t i = 0; i < needs.size(); ++i) needs[i] = needs_grad[i] ? 1 : 0;
  std::vector<eng_tensor> g_raw = raw(g);
  std::vector<eng_tensor> gin_raw(input_meta_.size(), nullptr);
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  eng_status st = op.backward(op.self, &ctx, in_raw.data(), out_raw.data(), g_raw.data(),
                              attrs_.empty() ? nullptr : attrs_.data(), needs.data(), gin_raw.data());
  std::vector<OwnedHandle> gin;
  for (eng_tensor h : gin_raw) gin.emplace_back(h);
  if (st != ENG_OK)
    throw Error(fmt::format("custom op '{}' backward failed: {}", def_->name, session_->error()), st);
  std::vector<rt::Tensor> result(input_meta_.size());
  for (size_t i = 0; i < input_meta_.size(); ++i) {
    if (!needs_grad[i] || gin[i].get() == nullptr) continue;
    const rt::Tensor& gi = gin[i].get()->tensor;
    if (gi.shape() != input_meta_[i].shape)
      fail("custom op '{}' backward returned a gradient of shape {} for input {} of shape {}", def_->name,
           gi.shape().str(), i, input_meta_[i].shape.str());
    result[i] = gi;
  }
  return result;
}

void CustomOpNode::release_saved() {
  inputs_.clear();
  outputs_.clear();
  input_meta_.clear();
  output_meta_.clear();
}

}  // namespace engine::host
