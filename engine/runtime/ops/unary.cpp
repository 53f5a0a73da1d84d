// The pointwise functions of one tensor: sqrt, rsqrt, abs, sign, pow with a scalar exponent, clamp.
//
// Backward (dy the output's gradient, y = f(x)):
//   sqrt:  dx = dy / (2 y)          rsqrt: dx = -dy y^3 / 2
//   abs:   dx = dy sign(x)          sign:  dx = 0
//   pow:   dx = dy p x^(p-1)        (0 for p == 0)
//   clamp: dx = dy where lo <= x <= hi, else 0
#include <cmath>

#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Rsqrt: return "rsqrt";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::Sign: return "sign";
    case UnaryOp::PowScalar: return "pow_scalar";
    case UnaryOp::Clamp: return "clamp";
  }
  return "unary";
}

class UnaryNode final : public Node {
 public:
  UnaryNode(UnaryOp op, double p0, double p1) : op_(op), p0_(p0), p1_(p1) {
    if (op == UnaryOp::PowScalar && !std::isfinite(p0)) fail("pow_scalar: the exponent {} is not finite", p0);
    if (op == UnaryOp::Clamp && (std::isnan(p0) || std::isnan(p1) || p0 > p1))
      fail("clamp: lo {} must not exceed hi {} (and neither may be NaN)", p0, p1);
  }
  const char* name() const override { return unary_name(op_); }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 1 || !inputs[0].defined()) fail("{}: expected one input", name());
    const KernelTable& kt = detail::kernels_of(name(), {inputs[0]});
    const DType ct = detail::compute_dtype(kt, name(), {inputs[0]});
    detail::require(kt, Kernel::Unary, ct, name());
    Tensor x = detail::as_compute(inputs[0], ct);
    Tensor y = Tensor::empty(x.shape(), ct, x.device());
    if (y.numel() > 0) kt.unary(op_, x, p0_, p1_, y);
    if (save) {
      ct_ = ct;
      shape_ = x.shape();
      if (op_ != UnaryOp::Sign) {
        x_ = detail::saved_input(inputs[0], x);
        y_ = y;
      }
    }
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !grad_outputs[0].defined()) return {Tensor()};
    const KernelTable& kt = grad_outputs[0].device().kernels();
    if (op_ == UnaryOp::Sign) return {Tensor::zeros(shape_, ct_, grad_outputs[0].device())};
    Tensor dy = detail::as_compute(grad_outputs[0], ct_);
    Tensor x = detail::as_compute(x_, ct_);
    Tensor dx = Tensor::empty(shape_, ct_, dy.device());
    if (dx.numel() > 0) kt.unary_backward(op_, dy, x, y_, p0_, p1_, dx);
    return {dx};
  }

  void release_saved() override {
    x_ = Tensor();
    y_ = Tensor();
  }

 private:
  UnaryOp op_;
  double p0_, p1_;
  DType ct_ = ENG_F32;
  Dims shape_;
  Tensor x_, y_;
};

}  // namespace

std::unique_ptr<Node> make_unary(UnaryOp op, double p0, double p1) {
  return std::make_unique<UnaryNode>(op, p0, p1);
}

}  // namespace engine::rt::ops
