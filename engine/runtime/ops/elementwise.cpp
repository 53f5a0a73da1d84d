// Add, mul (with b broadcast over a's leading dims), scale, and the in-place updates optimizers use.
#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

// b's shape must equal a's trailing dims; returns (outer, inner) with inner = b.numel().
std::pair<int64_t, int64_t> broadcast_split(const Tensor& a, const Tensor& b, const char* op) {
  bool ok = b.ndim() <= a.ndim();
  for (int i = 0; ok && i < b.ndim(); ++i) ok = b.dim(b.ndim() - 1 - i) == a.dim(a.ndim() - 1 - i);
  if (!ok)
    fail(
        "{}: b {} must have the shape of a's trailing dimensions (a {}); broadcasting over a's leading "
        "dimensions is "
        "the supported form",
        op, b.describe(), a.describe());
  const int64_t inner = b.numel();
  return {inner ? a.numel() / inner : 0, inner};
}

class BinaryNode final : public Node {
 public:
  explicit BinaryNode(bool multiply) : mul_(multiply) {}
  const char* name() const override { return mul_ ? "mul" : "add"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2) fail("{}: expected inputs {{a, b}}, got {}", name(), inputs.size());
    const KernelTable& kt = detail::kernels_of(name(), {inputs[0], inputs[1]});
    const DType ct = detail::compute_dtype(kt, name(), {inputs[0], inputs[1]});
    detail::require(kt, mul_ ? Kernel::MulBroadcast : Kernel::AddBroadcast, ct, name());
    Tensor a = detail::as_compute(inputs[0], ct);
    Tensor b = detail::as_compute(inputs[1], ct);
    broadcast_split(a, b, name());
    Tensor y = Tensor::empty(a.shape(), ct, a.device());
    (mul_ ? kt.mul_broadcast : kt.add_broadcast)(a, b, y);
    if (save) {
      a_shape_ = a.shape();
      b_shape_ = b.shape();
      ct_ = ct;
      if (mul_) {
        a_ = a;
        b_ = b;
      }
    }
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(2);
    if (!grad_outputs[0].defined()) return grads;
    const KernelTable& kt = grad_outputs[0].device().kernels();
    Tensor dy = detail::as_compute(grad_outputs[0], ct_);  // a's shape
    const int64_t inner = b_shape_.numel(), outer = inner ? a_shape_.numel() / inner : 0;
    if (needs_grad[0]) {
      if (!mul_) {
        grads[0] = dy;
      } else {  // da = dy * b
        Tensor da = Tensor::empty(a_shape_, ct_, dy.device());
        kt.mul_broadcast(dy, b_, da);
        grads[0] = da;
      }
    }
    if (needs_grad[1]) {
      if (!mul_ && outer == 1) {
        grads[1] = dy.view(b_shape_);
      } else {  // db = sum over a's leading dims of dy (add) or dy * a (mul)
        Tensor db = Tensor::empty(b_shape_, ct_, dy.device());
        if (mul_)
          kt.sum_rows_product(dy, a_, db);
        else
          kt.sum_rows(dy, db);
        grads[1] = db;
      }
    }
    return grads;
  }

  void release_saved() override {
    a_ = Tensor();
    b_ = Tensor();
  }

 private:
  bool mul_;
  Dims a_shape_, b_shape_;
  DType ct_ = ENG_F32;
  Tensor a_, b_;
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

std::unique_ptr<Node> make_add() { return std::make_unique<BinaryNode>(false); }
std::unique_ptr<Node> make_mul() { return std::make_unique<BinaryNode>(true); }
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
  detail::kernels_of("copy_", {dst, src}).copy(dst, src);
}

void fill_(Tensor& dst, double value) {
  expect_inplace_dst(dst, "fill_");
  dst.device().kernels().fill(dst, value);
}

}  // namespace engine::rt::ops
