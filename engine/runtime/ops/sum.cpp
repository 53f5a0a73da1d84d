// Sum node: the () sum of all elements (in fixed blocks: deterministic on every device), in stat_dtype; the
// gradient is the output gradient broadcast to the input's shape.
#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

class SumNode final : public Node {
 public:
  const char* name() const override { return "sum"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 1) fail("sum: expected one input, got {}", inputs.size());
    const KernelTable& kt = detail::kernels_of("sum", {inputs[0]});
    const DType ct = detail::compute_dtype(kt, "sum", {inputs[0]});
    detail::require(kt, Kernel::SumAll, ct, "sum");
    Tensor x = detail::as_compute(inputs[0], ct);
    Tensor y = Tensor::empty(Dims{}, stat_dtype(ct), x.device());
    kt.sum_all(x, y, false);
    if (save) {
      shape_ = x.shape();
      ct_ = ct;
    }
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !grad_outputs[0].defined()) return {Tensor()};
    // dx = dy broadcast, read on the device (no host round trip)
    Tensor dx = Tensor::empty(shape_, ct_, grad_outputs[0].device());
    dx.device().kernels().fill_from_scalar(dx, grad_outputs[0], 1.0);
    return {dx};
  }

  void release_saved() override {}

 private:
  Dims shape_;
  DType ct_ = ENG_F32;
};

}  // namespace

std::unique_ptr<Node> make_sum() { return std::make_unique<SumNode>(); }

}  // namespace engine::rt::ops
