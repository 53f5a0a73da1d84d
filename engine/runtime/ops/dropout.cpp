// Dropout node: the mask is a pure function of (seed, element index), so nothing is saved and a checkpointed
// replay of the forward drops exactly the same elements.

#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

class DropoutNode final : public Node {
 public:
  DropoutNode(double p, uint64_t seed) : p_(p), seed_(seed) {
    if (!(p >= 0.0 && p < 1.0)) fail("dropout: probability must be in [0, 1), got {}", p);
  }
  const char* name() const override { return "dropout"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 1) fail("dropout: expected one input, got {}", inputs.size());
    const KernelTable& kt = detail::kernels_of("dropout", {inputs[0]});
    const DType ct = detail::compute_dtype(kt, "dropout", {inputs[0]});
    detail::require(kt, Kernel::Dropout, ct, "dropout");
    if (save) ct_ = ct;
    return {apply(inputs[0], ct)};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !grad_outputs[0].defined()) return {Tensor()};
    return {apply(grad_outputs[0], ct_)};  // the same mask and scale applied to the gradient
  }

  void release_saved() override {}

 private:
  Tensor apply(const Tensor& in, DType ct) const {
    Tensor x = detail::as_compute(in, ct);
    Tensor y = Tensor::empty(x.shape(), ct, x.device());
    x.device().kernels().dropout(x, y, p_, seed_);
    return y;
  }

  double p_;
  uint64_t seed_;
  DType ct_ = ENG_F32;
};

}  // namespace

std::unique_ptr<Node> make_dropout(double p, uint64_t seed) { return std::make_unique<DropoutNode>(p, seed); }

}  // namespace engine::rt::ops
