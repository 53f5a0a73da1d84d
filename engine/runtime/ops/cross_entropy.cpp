// Cross-entropy and the fused linear + cross-entropy nodes. Output: a () loss in stat_dtype (f32, or f64 for
// f64 inputs); only the per-row log-sum-exp (N) is saved besides the inputs. The upstream gradient of the
// loss stays on the device: backward hands it to the kernel as a one-element tensor.
#include "engine/core/error.hpp"
#include "engine/runtime/ops/linear_cross_entropy.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

// labels (N) int32; every label is ignore_index or in [0, V). Host-readable labels are checked here; labels
// on an accelerator were made by the engine from checked host data (engine/train), and are not read back.
Tensor checked_labels(const Tensor& in, int64_t N, int64_t V, int64_t ignore_index, const char* op) {
  Tensor labels = detail::as_index(in, op, "labels");
  if (labels.numel() != N) fail("{}: {} labels for {} rows", op, labels.numel(), N);
  if (labels.device().type() != DeviceType::CPU) return labels;
  const int32_t* l = labels.data<int32_t>();
  for (int64_t i = 0; i < N; ++i)
    if (l[i] != ignore_index && (l[i] < 0 || l[i] >= V))
      fail("{}: label {} at row {} is outside the vocabulary of {} (and is not ignore_index {})", op, l[i], i,
           V, ignore_index);
  return labels;
}

class CrossEntropyNode final : public Node {
 public:
  CrossEntropyNode(int64_t ignore_index, double scale) : ignore_(ignore_index), scale_(scale) {}
  const char* name() const override { return "cross_entropy"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2) fail("cross_entropy: expected inputs {{logits, labels}}, got {}", inputs.size());
    detail::expect_rank(inputs[0], 2, "cross_entropy", "logits (N, V)");
    const KernelTable& kt = detail::kernels_of("cross_entropy", {inputs[0], inputs[1]});
    const DType ct = detail::compute_dtype(kt, "cross_entropy", {inputs[0]});
    detail::require(kt, Kernel::CrossEntropy, ct, "cross_entropy");
    Tensor z = detail::as_compute(inputs[0], ct);  // (N, V)
    const int64_t N = z.dim(0), V = z.dim(1);
    Tensor labels = checked_labels(inputs[1], N, V, ignore_, "cross_entropy");
    Tensor lse = Tensor::empty({N}, stat_dtype(ct), z.device());
    Tensor loss = Tensor::empty(Dims{}, stat_dtype(ct), z.device());
    kt.cross_entropy(z, labels, ignore_, scale_, loss, lse);
    if (save) {
      z_ = z;
      labels_ = labels;
      lse_ = lse;
    }
    return {loss};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(2);
    if (!needs_grad[0] || !grad_outputs[0].defined()) return grads;
    if (!z_.defined()) fail("cross_entropy: backward without a saved forward");
    Tensor dz = Tensor::empty(z_.shape(), z_.dtype(), z_.device());
    z_.device().kernels().cross_entropy_backward(z_, labels_, lse_, ignore_, scale_, grad_outputs[0], dz);
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
      : ignore_(ignore_index), scale_(scale), chunk_rows_(chunk_rows) {}
  const char* name() const override { return "linear_cross_entropy"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 3)
      fail("linear_cross_entropy: expected inputs {{hidden, weight, labels}}, got {}", inputs.size());
    detail::expect_rank(inputs[0], 2, "linear_cross_entropy", "hidden (N, C)");
    detail::expect_rank(inputs[1], 2, "linear_cross_entropy", "weight (V, C)");
    const KernelTable& kt = detail::kernels_of("linear_cross_entropy", {inputs[0], inputs[1], inputs[2]});
    const DType ct = detail::compute_dtype(kt, "linear_cross_entropy", {inputs[0], inputs[1]});
    detail::require(kt, Kernel::LinearCrossEntropy, ct, "linear_cross_entropy");
    Tensor h = detail::as_compute(inputs[0], ct);  // (N, C)
    Tensor w = detail::as_compute(inputs[1], ct);  // (V, C)
    const int64_t N = h.dim(0), C = h.dim(1), V = w.dim(0);
    if (w.dim(1) != C)
      fail("linear_cross_entropy: hidden {} and weight {} differ in C", h.describe(), w.describe());
    Tensor labels = checked_labels(inputs[2], N, V, ignore_, "linear_cross_entropy");
    Tensor lse = Tensor::empty({N}, stat_dtype(ct), h.device());
    Tensor loss = Tensor::empty(Dims{}, stat_dtype(ct), h.device());
    kt.linear_cross_entropy(h, w, labels, ignore_, scale_, chunk_rows_, loss, lse);
    if (save) {
      h_ = detail::saved_input(inputs[0], h);
      w_ = detail::saved_input(inputs[1], w);
      ct_ = ct;
      labels_ = labels;
      lse_ = lse;
    }
    return {loss};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(3);
    if (!grad_outputs[0].defined() || (!needs_grad[0] && !needs_grad[1])) return grads;
    if (!h_.defined()) fail("linear_cross_entropy: backward without a saved forward");
    const DType ct = ct_;
    const Tensor h = detail::as_compute(h_, ct), w = detail::as_compute(w_, ct);
    if (needs_grad[0]) grads[0] = Tensor::empty(h_.shape(), ct, h_.device());
    if (needs_grad[1]) grads[1] = Tensor::empty(w_.shape(), ct, h_.device());
    h.device().kernels().linear_cross_entropy_backward(h, w, labels_, lse_, ignore_, scale_, chunk_rows_,
                                                       grad_outputs[0], grads[0], grads[1]);
    return grads;
  }

  void release_saved() override { h_ = w_ = labels_ = lse_ = Tensor(); }

 private:
  int64_t ignore_;
  double scale_;
  int64_t chunk_rows_;  // <= 0: the device's own choice
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
