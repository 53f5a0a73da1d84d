// Softmax node over the last dim; saves its output (the backward needs only y).
#include "kernels/cpu/softmax.hpp"

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
    auto& pool = detail::cpu_pool(inputs[0], "softmax");
    const DType ct = detail::compute_dtype("softmax", {inputs[0]});
    Tensor x = detail::as_compute(inputs[0], ct);  // (..., C)
    if (x.ndim() < 1) fail("softmax: input {} needs at least one dimension", x.describe());
    const int64_t C = x.dim(-1), N = C ? x.numel() / C : 0;
    Tensor y = Tensor::empty(x.shape(), ct, x.device());
    detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      cpu::softmax_forward<T>(pool, x.data<T>(), y.data<T>(), N, C);
    });
    if (save) y_ = y;
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !grad_outputs[0].defined()) return {Tensor()};
    if (!y_.defined()) fail("softmax: backward without a saved forward");
    auto& pool = detail::cpu_pool(y_, "softmax");
    Tensor dy = detail::as_compute(grad_outputs[0], y_.dtype());
    const int64_t C = y_.dim(-1), N = C ? y_.numel() / C : 0;
    Tensor dx = Tensor::empty(y_.shape(), y_.dtype(), y_.device());
    detail::dispatch(y_.dtype(), [&](auto tag) {
      using T = decltype(tag);
      cpu::softmax_backward<T>(pool, dy.data<T>(), y_.data<T>(), dx.data<T>(), N, C);
    });
    return {dx};
  }

  void release_saved() override { y_ = Tensor(); }

 private:
  Tensor y_;
};

}  // namespace

std::unique_ptr<Node> make_softmax() { return std::make_unique<SoftmaxNode>(); }

}  // namespace engine::rt::ops
