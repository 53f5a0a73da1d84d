// engine/cpp/custom_op.hpp: a custom op (forward + backward with the plugin's own kernels) as a class.
//
//   class DequantMatmul : public engine::sdk::CustomOp {
//     std::vector<Tensor> forward(Host&, const std::vector<Tensor>& in, const void* attrs) override;
//     std::vector<Tensor> backward(Host&, const Inputs& ...) override;
//   };
//   // in the plugin's constructor; the op object must live as long as the plugin instance:
//   id_ = op_.register_with(host, "nf4.dequant_matmul", /*n_inputs=*/2, /*n_outputs=*/1, sizeof(Attrs));
//   // in linear(): std::vector<Tensor> y = host.custom(id_, {x, codes}, &attrs, 1);
//
// The engine records the op on the tape, replays forward under activation checkpointing and calls backward.
#pragma once

#include <string>
#include <vector>

#include "engine/abi/engine.h"
#include "engine/cpp/host.hpp"

namespace engine::sdk {

class CustomOp {
 public:
  virtual ~CustomOp() = default;
  CustomOp() = default;
  CustomOp(const CustomOp&) = delete;
  CustomOp& operator=(const CustomOp&) = delete;

  // inputs: n_inputs tensors -> n_outputs new tensors.
  virtual std::vector<Tensor> forward(Host& host, const std::vector<Tensor>& inputs, const void* attrs) = 0;
  // -> one gradient per input, an empty Tensor where needs_grad[i] is false.
  virtual std::vector<Tensor> backward(Host& host, const std::vector<Tensor>& inputs,
                                       const std::vector<Tensor>& outputs,
                                       const std::vector<Tensor>& grad_outputs, const void* attrs,
                                       const std::vector<bool>& needs_grad) = 0;

  // Registers this op with the engine and returns its id for host.custom(). `name` must be unique per process
  // (prefix it with the plugin's name); attrs_size is the byte size of the plain-data attribute block.
  // flags: ENG_CUSTOM_OP_BACKWARD_NO_INPUTS / _NO_OUTPUTS when backward does not read those (it then gets
  // empty tensors for them, and the engine does not keep them alive until backward).
  eng_op_id register_with(const Host& host, const std::string& name, int32_t n_inputs, int32_t n_outputs,
                          uint32_t attrs_size, uint32_t flags = 0) {
    api_ = host.api();
    name_ = name;
    n_inputs_ = n_inputs;
    n_outputs_ = n_outputs;
    eng_custom_op op{};
    op.struct_size = sizeof(op);
    op.name = name_.c_str();
    op.n_inputs = n_inputs;
    op.n_outputs = n_outputs;
    op.attrs_size = attrs_size;
    op.self = this;
    op.forward = &forward_entry;
    op.backward = &backward_entry;
    op.flags = flags;
    return host.op_register(op);
  }

 private:
  static std::vector<Tensor> wrap(const eng_host_api* api, const eng_tensor* ts, int32_t n) {
    std::vector<Tensor> out;
    out.reserve(static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) out.push_back(Tensor::borrow(api, ts[i]));
    return out;
  }
  static eng_status forward_entry(void* self, const eng_ctx* ctx, const eng_tensor* inputs, const void* attrs,
                                  eng_tensor* outputs) noexcept {
    auto* op = static_cast<CustomOp*>(self);
    return detail::guard(op->api_, ctx, [&] {
      Host h(op->api_, ctx);
      std::vector<Tensor> out = op->forward(h, wrap(op->api_, inputs, op->n_inputs_), attrs);
      if (out.size() != static_cast<size_t>(op->n_outputs_)) {
        throw Error("custom op " + op->name_ + ": forward returned " + std::to_string(out.size()) +
                        " outputs, registered with " + std::to_string(op->n_outputs_),
                    ENG_ERR_INTERNAL);
      }
      for (size_t i = 0; i < out.size(); ++i) outputs[i] = out[i].release();
    });
  }
  static eng_status backward_entry(void* self, const eng_ctx* ctx, const eng_tensor* inputs,
                                   const eng_tensor* outputs, const eng_tensor* grad_outputs,
                                   const void* attrs, const int32_t* needs_grad,
                                   eng_tensor* grad_inputs) noexcept {
    auto* op = static_cast<CustomOp*>(self);
    return detail::guard(op->api_, ctx, [&] {
      Host h(op->api_, ctx);
      std::vector<bool> needs(static_cast<size_t>(op->n_inputs_));
      for (int32_t i = 0; i < op->n_inputs_; ++i) needs[static_cast<size_t>(i)] = needs_grad[i] != 0;
      std::vector<Tensor> grads =
          op->backward(h, wrap(op->api_, inputs, op->n_inputs_), wrap(op->api_, outputs, op->n_outputs_),
                       wrap(op->api_, grad_outputs, op->n_outputs_), attrs, needs);
      if (grads.size() != static_cast<size_t>(op->n_inputs_)) {
        throw Error("custom op " + op->name_ + ": backward returned " + std::to_string(grads.size()) +
                        " gradients for " + std::to_string(op->n_inputs_) + " inputs",
                    ENG_ERR_INTERNAL);
      }
      for (size_t i = 0; i < grads.size(); ++i) grad_inputs[i] = needs[i] ? grads[i].release() : nullptr;
    });
  }

  const eng_host_api* api_ = nullptr;
  std::string name_;
  int32_t n_inputs_ = 0;
  int32_t n_outputs_ = 0;
};

}  // namespace engine::sdk
