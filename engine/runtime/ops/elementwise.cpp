// Add, mul (with b broadcast over a's leading dims), scale, and the in-place updates optimizers use.
#include "kernels/cpu/elementwise.hpp"

#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "kernels/cpu/reduce.hpp"

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
    auto& pool = detail::cpu_pool(inputs[0], name());
    const DType ct = detail::compute_dtype(name(), {inputs[0], inputs[1]});
    Tensor a = detail::as_compute(inputs[0], ct);
    Tensor b = detail::as_compute(inputs[1], ct);
    const auto [outer, inner] = broadcast_split(a, b, name());
    Tensor y = Tensor::empty(a.shape(), ct, a.device());
    detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      if (mul_)
        cpu::mul_broadcast<T>(pool, a.data<T>(), b.data<T>(), y.data<T>(), outer, inner);
      else
        cpu::add_broadcast<T>(pool, a.data<T>(), b.data<T>(), y.data<T>(), outer, inner);
    });
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
    auto& pool = detail::cpu_pool(grad_outputs[0], name());
    Tensor dy = detail::as_compute(grad_outputs[0], ct_);  // a's shape
    const int64_t inner = b_shape_.numel(), outer = inner ? a_shape_.numel() / inner : 0;
    detail::dispatch(ct_, [&](auto tag) {
      using T = decltype(tag);
      if (needs_grad[0]) {
        if (!mul_) {
          grads[0] = dy;
        } else {  // da = dy * b
          Tensor da = Tensor::empty(a_shape_, ct_, dy.device());
          cpu::mul_broadcast<T>(pool, dy.data<T>(), b_.data<T>(), da.data<T>(), outer, inner);
          grads[0] = da;
        }
      }
      if (needs_grad[1]) {
        if (!mul_ && outer == 1) {
          grads[1] = dy.view(b_shape_);
        } else {  // db = sum over a's leading dims of dy (add) or dy * a (mul)
          Tensor db = Tensor::empty(b_shape_, ct_, dy.device());
          if (mul_)
            cpu::sum_rows_product<T>(pool, dy.data<T>(), a_.data<T>(), outer, inner, db.data<T>());
          else
            cpu::sum_rows<T>(pool, dy.data<T>(), outer, inner, db.data<T>());
          grads[1] = db;
        }
      }
    });
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
    const DType ct = detail::compute_dtype("scale", {inputs[0]});
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
    auto& pool = detail::cpu_pool(in, "scale");
    Tensor x = detail::as_compute(in, ct);
    Tensor y = Tensor::empty(x.shape(), ct, x.device());
    detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      cpu::scale<T>(pool, x.data<T>(), static_cast<T>(s_), y.data<T>(), x.numel());
    });
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
  auto& pool = detail::cpu_pool(dst, "axpby_");
  if (dst.dtype() != ENG_F32 && dst.dtype() != ENG_F64)
    fail("axpby_: destination {} must be f32 or f64 (keep optimizer state and master weights in f32)",
         dst.describe());
  Tensor s = detail::as_compute(src, dst.dtype());
  detail::dispatch(dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::axpby<T>(pool, dst.data<T>(), static_cast<T>(a), s.data<T>(), static_cast<T>(b), dst.numel());
  });
}

void copy_(Tensor& dst, const Tensor& src) {
  expect_inplace_dst(dst, "copy_");
  if (src.shape() != dst.shape())
    fail("copy_: source {} and destination {} differ in shape", src.describe(), dst.describe());
  detail::cpu_pool(dst, "copy_");
  if (!dtype_is_float(dst.dtype()) || !dtype_is_float(src.dtype())) {
    dst.copy_from(src);
    return;
  }
  Tensor c = detail::convert(src, dst.dtype());  // contiguous, dst's dtype (src itself if it already was)
  dst.device().copy_within(dst.raw_data(), c.raw_data(), dst.nbytes());
}

void fill_(Tensor& dst, double value) {
  expect_inplace_dst(dst, "fill_");
  auto& pool = detail::cpu_pool(dst, "fill_");
  if (dst.dtype() == ENG_F32) {
    cpu::fill<float>(pool, dst.data<float>(), static_cast<float>(value), dst.numel());
  } else if (dst.dtype() == ENG_F64) {
    cpu::fill<double>(pool, dst.data<double>(), value, dst.numel());
  } else {
    Tensor v = Tensor::full(dst.shape(), dst.dtype(), dst.device(), value);
    dst.device().copy_within(dst.raw_data(), v.raw_data(), dst.nbytes());
  }
}

}  // namespace engine::rt::ops
