// The binary ops with numpy broadcasting (add, mul, div, maximum, minimum), where, scale, and the in-place
// updates optimizers use.
#include <utility>

#include "engine/core/error.hpp"
#include "engine/runtime/ops/broadcast.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::Maximum: return "maximum";
    case BinaryOp::Minimum: return "minimum";
    case BinaryOp::MaxSelect: return "maximum (gradient share)";
    case BinaryOp::MinSelect: return "minimum (gradient share)";
  }
  return "binary";
}

// b's shape equals a's trailing dims: the (outer, inner) form of the add_broadcast / mul_broadcast kernels.
bool trailing_of(const Dims& a, const Dims& b) {
  if (b.ndim > a.ndim) return false;
  for (int i = 0; i < b.ndim; ++i)
    if (b[b.ndim - 1 - i] != a[a.ndim - 1 - i]) return false;
  return true;
}

// a op b (contiguous, compute dtype) broadcast to their common shape.
Tensor apply_binary(const KernelTable& kt, BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  const Dims out = detail::broadcast_shape(name, a.shape(), b.shape());
  Tensor y = Tensor::empty(out, a.dtype(), a.device());
  if (y.numel() == 0) return y;
  if ((op == BinaryOp::Add || op == BinaryOp::Mul) && out == a.shape() && trailing_of(a.shape(), b.shape())) {
    (op == BinaryOp::Mul ? kt.mul_broadcast : kt.add_broadcast)(a, b, y);
    return y;
  }
  if ((op == BinaryOp::Add || op == BinaryOp::Mul) && out == b.shape() && trailing_of(b.shape(), a.shape())) {
    (op == BinaryOp::Mul ? kt.mul_broadcast : kt.add_broadcast)(b, a, y);  // commutes
    return y;
  }
  kt.binary(op, detail::make_broadcast(out, {a.shape(), b.shape()}), a, b, y);
  return y;
}

class BinaryNode final : public Node {
 public:
  explicit BinaryNode(BinaryOp op) : op_(op) {
    if (op == BinaryOp::MaxSelect || op == BinaryOp::MinSelect)
      fail("{} is a kernel of maximum's / minimum's backward, not an op", binary_name(op));
  }
  const char* name() const override { return binary_name(op_); }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2) fail("{}: expected inputs {{a, b}}, got {}", name(), inputs.size());
    if (!inputs[0].defined() || !inputs[1].defined()) fail("{}: an input is missing", name());
    const KernelTable& kt = detail::kernels_of(name(), {inputs[0], inputs[1]});
    const DType ct = detail::compute_dtype(kt, name(), {inputs[0], inputs[1]});
    detail::require(kt, Kernel::Binary, ct, name());
    if (op_ == BinaryOp::Add || op_ == BinaryOp::Mul)
      detail::require(kt, op_ == BinaryOp::Mul ? Kernel::MulBroadcast : Kernel::AddBroadcast, ct, name());
    Tensor a = detail::as_compute(inputs[0], ct);
    Tensor b = detail::as_compute(inputs[1], ct);
    Tensor y = apply_binary(kt, op_, name(), a, b);
    if (save) {
      a_shape_ = a.shape();
      b_shape_ = b.shape();
      ct_ = ct;
      if (op_ != BinaryOp::Add) {
        a_ = detail::saved_input(inputs[0], a);
        b_ = detail::saved_input(inputs[1], b);
      }
    }
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(2);
    if (!grad_outputs[0].defined()) return grads;
    const KernelTable& kt = grad_outputs[0].device().kernels();
    Tensor dy = detail::as_compute(grad_outputs[0], ct_);  // the broadcast shape
    Tensor a, b;
    if (op_ != BinaryOp::Add) {
      a = detail::as_compute(a_, ct_);
      b = detail::as_compute(b_, ct_);
    }
    switch (op_) {
      case BinaryOp::Add:
        if (needs_grad[0]) grads[0] = detail::sum_to_shape(dy, a_shape_);
        if (needs_grad[1]) grads[1] = detail::sum_to_shape(dy, b_shape_);
        break;
      case BinaryOp::Mul:
        if (needs_grad[0]) grads[0] = detail::sum_to_shape(apply_binary(kt, BinaryOp::Mul, name(), dy, b), a_shape_);
        if (needs_grad[1]) {
          if (dy.shape() == a_shape_ && trailing_of(a_shape_, b_shape_) && b_shape_ != a_shape_) {
            Tensor db = Tensor::empty(b_shape_, ct_, dy.device());  // db = column sums of dy * a, fused
            kt.sum_rows_product(dy, a, db);
            grads[1] = db;
          } else {
            grads[1] = detail::sum_to_shape(apply_binary(kt, BinaryOp::Mul, name(), dy, a), b_shape_);
          }
        }
        break;
      case BinaryOp::Div: {  // da = dy / b; db = -dy a / b^2 = -(dy / b) * (a / b)
        Tensor t = apply_binary(kt, BinaryOp::Div, name(), dy, b);
        if (needs_grad[0]) grads[0] = detail::sum_to_shape(t, a_shape_);
        if (needs_grad[1]) {
          Tensor q = apply_binary(kt, BinaryOp::Div, name(), a, b);
          Tensor db = detail::sum_to_shape(apply_binary(kt, BinaryOp::Mul, name(), t, q), b_shape_);
          Tensor neg = Tensor::empty(b_shape_, ct_, dy.device());
          kt.scale(db, -1.0, neg);
          grads[1] = neg;
        }
        break;
      }
      case BinaryOp::Maximum:
      case BinaryOp::Minimum: {  // each input gets dy where it wins, half of it at a tie
        const BinaryOp sel = op_ == BinaryOp::Maximum ? BinaryOp::MaxSelect : BinaryOp::MinSelect;
        if (needs_grad[0])
          grads[0] = detail::sum_to_shape(apply_binary(kt, BinaryOp::Mul, name(), dy, apply_binary(kt, sel, name(), a, b)),
                                          a_shape_);
        if (needs_grad[1])
          grads[1] = detail::sum_to_shape(apply_binary(kt, BinaryOp::Mul, name(), dy, apply_binary(kt, sel, name(), b, a)),
                                          b_shape_);
        break;
      }
      default:
        fail("{}: no backward", name());
    }
    return grads;
  }

  void release_saved() override {
    a_ = Tensor();
    b_ = Tensor();
  }

 private:
  BinaryOp op_;
  Dims a_shape_, b_shape_;
  DType ct_ = ENG_F32;
  Tensor a_, b_;
};

// cond != 0 ? a : b, the three broadcast together.
class WhereNode final : public Node {
 public:
  const char* name() const override { return "where"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 3) fail("where: expected inputs {{cond, a, b}}, got {}", inputs.size());
    for (const Tensor& t : inputs)
      if (!t.defined()) fail("where: an input is missing");
    const KernelTable& kt = detail::kernels_of("where", {inputs[0], inputs[1], inputs[2]});
    const DType ct = detail::compute_dtype(kt, "where", {inputs[1], inputs[2]});
    detail::require(kt, Kernel::Where, ct, "where");
    const DType cd = inputs[0].dtype();
    if (!dtype_is_float(cd) && cd != ENG_I32 && cd != ENG_I64 && cd != ENG_U8 && cd != ENG_I8 && cd != ENG_BOOL)
      fail("where: cond {} must be a floating, integer or bool tensor", inputs[0].describe());
    Tensor c = detail::convert(inputs[0], ct);  // nonzero is true
    Tensor a = detail::as_compute(inputs[1], ct), b = detail::as_compute(inputs[2], ct);
    const Dims out = detail::broadcast_shape("where", detail::broadcast_shape("where", c.shape(), a.shape()), b.shape());
    Tensor y = Tensor::empty(out, ct, a.device());
    if (y.numel() > 0) kt.where(detail::make_broadcast(out, {c.shape(), a.shape(), b.shape()}), c, a, b, y);
    if (save) {
      cond_ = c;
      a_shape_ = a.shape();
      b_shape_ = b.shape();
      ct_ = ct;
    }
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(3);  // cond gets none
    if (!grad_outputs[0].defined()) return grads;
    const KernelTable& kt = grad_outputs[0].device().kernels();
    Tensor dy = detail::as_compute(grad_outputs[0], ct_);
    Tensor zero = Tensor::zeros(Dims{}, ct_, dy.device());
    auto select = [&](const Tensor& x, const Tensor& y) {  // cond ? x : y in dy's shape
      Tensor out = Tensor::empty(dy.shape(), ct_, dy.device());
      if (out.numel() > 0)
        kt.where(detail::make_broadcast(dy.shape(), {cond_.shape(), x.shape(), y.shape()}), cond_, x, y, out);
      return out;
    };
    if (needs_grad[1]) grads[1] = detail::sum_to_shape(select(dy, zero), a_shape_);
    if (needs_grad[2]) grads[2] = detail::sum_to_shape(select(zero, dy), b_shape_);
    return grads;
  }

  void release_saved() override { cond_ = Tensor(); }

 private:
  Tensor cond_;
  Dims a_shape_, b_shape_;
  DType ct_ = ENG_F32;
};

class ScaleNode final : public Node {
 public:
  explicit ScaleNode(double s) : s_(s) {}
  const char* name() const override { return "scale"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 1) fail("scale: expected one input, got {}", inputs.size());
    const KernelTable& kt = detail::kernels_of("scale", {inputs[0]});
    const DType ct = detail::compute_dtype(kt, "scale", {inputs[0]});
    detail::require(kt, Kernel::Scale, ct, "scale");
    if (save) ct_ = ct;
    return {apply(inputs[0], ct)};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !grad_outputs[0].defined()) return {Tensor()};
    return {apply(grad_outputs[0], ct_)};
  }

  void release_saved() override {}

 private:
  Tensor apply(const Tensor& in, DType ct) const {
    Tensor x = detail::as_compute(in, ct);
    Tensor y = Tensor::empty(x.shape(), ct, x.device());
    x.device().kernels().scale(x, s_, y);
    return y;
  }

  double s_;
  DType ct_ = ENG_F32;
};

void expect_inplace_dst(const Tensor& dst, const char* op) {
  if (!dst.defined()) fail("{}: destination tensor is undefined", op);
  if (!dst.is_contiguous()) fail("{}: destination {} must be contiguous", op, dst.describe());
}

}  // namespace

std::unique_ptr<Node> make_add() { return std::make_unique<BinaryNode>(BinaryOp::Add); }
std::unique_ptr<Node> make_mul() { return std::make_unique<BinaryNode>(BinaryOp::Mul); }
std::unique_ptr<Node> make_binary(BinaryOp op) { return std::make_unique<BinaryNode>(op); }
std::unique_ptr<Node> make_where() { return std::make_unique<WhereNode>(); }
std::unique_ptr<Node> make_scale(double s) { return std::make_unique<ScaleNode>(s); }

void axpby_(Tensor& dst, double a, const Tensor& src, double b) {
  expect_inplace_dst(dst, "axpby_");
  if (src.shape() != dst.shape())
    fail("axpby_: source {} and destination {} differ in shape", src.describe(), dst.describe());
  if (dst.dtype() != ENG_F32 && dst.dtype() != ENG_F64)
    fail("axpby_: destination {} must be f32 or f64 (keep optimizer state and master weights in f32)",
         dst.describe());
  const KernelTable& kt = detail::kernels_of("axpby_", {dst, src});
  detail::require(kt, Kernel::Axpby, dst.dtype(), "axpby_");
  kt.axpby(dst, a, detail::contiguous(src), b);
}

void copy_(Tensor& dst, const Tensor& src) {
  expect_inplace_dst(dst, "copy_");
  if (src.shape() != dst.shape())
    fail("copy_: source {} and destination {} differ in shape", src.describe(), dst.describe());
  // Like torch's copy_, across devices too (a checkpoint's tensor into a parameter placed on another device).
  const Tensor from = &src.device() == &dst.device() ? src : src.to_device(dst.device());
  detail::kernels_of("copy_", {dst, from}).copy(dst, from);
}

void fill_(Tensor& dst, double value) {
  expect_inplace_dst(dst, "fill_");
  dst.device().kernels().fill(dst, value);
}

}  // namespace engine::rt::ops
