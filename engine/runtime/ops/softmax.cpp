// Softmax node over the last dim; saves its output (the backward needs only y).
#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

class SoftmaxNode final : public Node {
 public:
  const char* name() const override { return "softmax"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 1) fail("softmax: expected one input, got {}", inputs.size());
    const KernelTable& kt = detail::kernels_of("softmax", {inputs[0]});
    const DType ct = detail::compute_dtype(kt, "softmax", {inputs[0]});
    detail::require(kt, Kernel::Softmax, ct, "softmax");
    Tensor x = detail::as_compute(inputs[0], ct);  // (..., C)
    if (x.ndim() < 1) fail("softmax: input {} needs at least one dimension", x.describe());
    Tensor y = Tensor::empty(x.shape(), ct, x.device());
    kt.softmax(x, y);
    if (save) y_ = y;
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !grad_outputs[0].defined()) return {Tensor()};
    if (!y_.defined()) fail("softmax: backward without a saved forward");
    Tensor dy = detail::as_compute(grad_outputs[0], y_.dtype());
    Tensor dx = Tensor::empty(y_.shape(), y_.dtype(), y_.device());
    y_.device().kernels().softmax_backward(dy, y_, dx);
    return {dx};
  }

  void release_saved() override { y_ = Tensor(); }

 private:
  Tensor y_;
};

}  // namespace

std::unique_ptr<Node> make_softmax() { return std::make_unique<SoftmaxNode>(); }

}  // namespace engine::rt::ops
