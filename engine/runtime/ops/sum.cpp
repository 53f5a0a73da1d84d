// Sum node: the () sum of all elements (accumulated in double in fixed blocks, kernels/cpu/reduce.hpp); the
// gradient is the output gradient broadcast to the input's shape.
#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "kernels/cpu/elementwise.hpp"
#include "kernels/cpu/reduce.hpp"

namespace engine::rt::ops {

namespace {

class SumNode final : public Node {
 public:
  const char* name() const override { return "sum"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 1) fail("sum: expected one input, got {}", inputs.size());
    auto& pool = detail::cpu_pool(inputs[0], "sum");
    const DType ct = detail::compute_dtype("sum", {inputs[0]});
    Tensor x = detail::as_compute(inputs[0], ct);
    Tensor y = Tensor::empty(Dims{}, ct, x.device());
    detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      *y.data<T>() = static_cast<T>(cpu::sum_all<T>(pool, x.data<T>(), x.numel()));
    });
    if (save) {
      shape_ = x.shape();
      ct_ = ct;
    }
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !grad_outputs[0].defined()) return {Tensor()};
    auto& pool = detail::cpu_pool(grad_outputs[0], "sum");
    const double g = grad_outputs[0].item();
    Tensor dx = Tensor::empty(shape_, ct_, grad_outputs[0].device());
    detail::dispatch(ct_, [&](auto tag) {
      using T = decltype(tag);
      cpu::fill<T>(pool, dx.data<T>(), static_cast<T>(g), dx.numel());
    });
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
