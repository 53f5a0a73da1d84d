// Cross-entropy and the fused linear + cross-entropy nodes. Output: a () loss in the compute type (f32, or
// f64 for f64 inputs); only the per-row log-sum-exp (N) is saved besides the inputs.
#include "kernels/cpu/cross_entropy.hpp"

#include "engine/core/error.hpp"
#include "engine/runtime/ops/linear_cross_entropy.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

// labels (N) int32; every label is ignore_index or in [0, V).
Tensor checked_labels(const Tensor& in, int64_t N, int64_t V, int64_t ignore_index, const char* op) {
  Tensor labels = detail::as_index(in, op, "labels");
  if (labels.numel() != N) fail("{}: {} labels for {} rows", op, labels.numel(), N);
  const int32_t* l = labels.data<int32_t>();
  for (int64_t i = 0; i < N; ++i)
    if (l[i] != ignore_index && (l[i] < 0 || l[i] >= V))
      fail("{}: label {} at row {} is outside the vocabulary of {} (and is not ignore_index {})", op, l[i], i,
           V, ignore_index);
  return labels;
}

Tensor scalar(double value, DType ct, Device& device) {
  Tensor t = Tensor::empty(Dims{}, ct, device);
  if (ct == ENG_F64)
    *t.data<double>() = value;
  else
    *t.data<float>() = static_cast<float>(value);
  return t;
}

class CrossEntropyNode final : public Node {
 public:
  CrossEntropyNode(int64_t ignore_index, double scale) : ignore_(ignore_index), scale_(scale) {}
  const char* name() const override { return "cross_entropy"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2) fail("cross_entropy: expected inputs {{logits, labels}}, got {}", inputs.size());
    detail::expect_rank(inputs[0], 2, "cross_entropy", "logits (N, V)");
    auto& pool = detail::cpu_pool(inputs[0], "cross_entropy");
    const DType ct = detail::compute_dtype("cross_entropy", {inputs[0]});
    Tensor z = detail::as_compute(inputs[0], ct);  // (N, V)
    const int64_t N = z.dim(0), V = z.dim(1);
    Tensor labels = checked_labels(inputs[1], N, V, ignore_, "cross_entropy");
    Tensor lse = Tensor::empty({N}, ct, z.device());
    const double loss = detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      return cpu::cross_entropy_forward<T>(pool, z.data<T>(), labels.data<int32_t>(), N, V, ignore_, scale_,
                                           lse.data<T>());
    });
    if (save) {
      z_ = z;
      labels_ = labels;
      lse_ = lse;
    }
    return {scalar(loss, ct, z.device())};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(2);
    if (!needs_grad[0] || !grad_outputs[0].defined()) return grads;
    if (!z_.defined()) fail("cross_entropy: backward without a saved forward");
    auto& pool = detail::cpu_pool(z_, "cross_entropy");
    const DType ct = z_.dtype();
    const double g = grad_outputs[0].item();
    Tensor dz = Tensor::empty(z_.shape(), ct, z_.device());
    detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      cpu::cross_entropy_backward<T>(pool, z_.data<T>(), labels_.data<int32_t>(), lse_.data<T>(), z_.dim(0),
                                     z_.dim(1), ignore_, static_cast<T>(scale_ * g), dz.data<T>());
    });
    grads[0] = dz;
    return grads;
  }

  void release_saved() override { z_ = labels_ = lse_ = Tensor(); }

 private:
  int64_t ignore_;
  double scale_;
  Tensor z_, labels_, lse_;
};

class LinearCrossEntropyNode final : public Node {
 public:
  LinearCrossEntropyNode(int64_t ignore_index, double scale, int64_t chunk_rows)
      : ignore_(ignore_index), scale_(scale), chunk_rows_override_(chunk_rows) {}
  const char* name() const override { return "linear_cross_entropy"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 3)
      fail("linear_cross_entropy: expected inputs {{hidden, weight, labels}}, got {}", inputs.size());
    detail::expect_rank(inputs[0], 2, "linear_cross_entropy", "hidden (N, C)");
    detail::expect_rank(inputs[1], 2, "linear_cross_entropy", "weight (V, C)");
    auto& pool = detail::cpu_pool(inputs[0], "linear_cross_entropy");
    const DType ct = detail::compute_dtype("linear_cross_entropy", {inputs[0], inputs[1]});
    Tensor h = detail::as_compute(inputs[0], ct);  // (N, C)
    Tensor w = detail::as_compute(inputs[1], ct);  // (V, C)
    const int64_t N = h.dim(0), C = h.dim(1), V = w.dim(0);
    if (w.dim(1) != C)
      fail("linear_cross_entropy: hidden {} and weight {} differ in C", h.describe(), w.describe());
    Tensor labels = checked_labels(inputs[2], N, V, ignore_, "linear_cross_entropy");
    Tensor lse = Tensor::empty({N}, ct, h.device());
    const int64_t R = chunk_rows(V, ct);
    const double loss = detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      return cpu::linear_cross_entropy_forward<T>(pool, h.data<T>(), w.data<T>(), labels.data<int32_t>(), N,
                                                  C, V, ignore_, scale_, R, lse.data<T>());
    });
    if (save) {
      h_ = detail::saved_input(inputs[0], h);
      w_ = detail::saved_input(inputs[1], w);
      ct_ = ct;
      labels_ = labels;
      lse_ = lse;
    }
    return {scalar(loss, ct, h.device())};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(3);
    if (!grad_outputs[0].defined() || (!needs_grad[0] && !needs_grad[1])) return grads;
    if (!h_.defined()) fail("linear_cross_entropy: backward without a saved forward");
    auto& pool = detail::cpu_pool(h_, "linear_cross_entropy");
    const DType ct = ct_;
    const double g = grad_outputs[0].item();
    const int64_t N = h_.dim(0), C = h_.dim(1), V = w_.dim(0);
    const Tensor h = detail::as_compute(h_, ct), w = detail::as_compute(w_, ct);
    if (needs_grad[0]) grads[0] = Tensor::empty(h_.shape(), ct, h_.device());
    if (needs_grad[1]) grads[1] = Tensor::empty(w_.shape(), ct, h_.device());
    detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      cpu::linear_cross_entropy_backward<T>(
          pool, h.data<T>(), w.data<T>(), labels_.data<int32_t>(), lse_.data<T>(), N, C, V, ignore_,
          static_cast<T>(scale_ * g), chunk_rows(V, ct), grads[0].defined() ? grads[0].data<T>() : nullptr,
          grads[1].defined() ? grads[1].data<T>() : nullptr);
    });
    return grads;
  }

  void release_saved() override { h_ = w_ = labels_ = lse_ = Tensor(); }

 private:
  int64_t chunk_rows(int64_t V, DType ct) const {
    return chunk_rows_override_ > 0 ? chunk_rows_override_
                                    : cpu::linear_ce_chunk_rows(V, static_cast<int64_t>(dtype_size(ct)));
  }

  int64_t ignore_;
  double scale_;
  int64_t chunk_rows_override_;
  DType ct_ = ENG_F32;
  Tensor h_, w_, labels_, lse_;
};

}  // namespace

std::unique_ptr<Node> make_cross_entropy(int64_t ignore_index, double scale) {
  return std::make_unique<CrossEntropyNode>(ignore_index, scale);
}
std::unique_ptr<Node> make_linear_cross_entropy(int64_t ignore_index, double scale) {
  return std::make_unique<LinearCrossEntropyNode>(ignore_index, scale, 0);
}
std::unique_ptr<Node> make_linear_cross_entropy_chunked(int64_t ignore_index, double scale,
                                                        int64_t chunk_rows) {
  return std::make_unique<LinearCrossEntropyNode>(ignore_index, scale, chunk_rows);
}

}  // namespace engine::rt::ops
