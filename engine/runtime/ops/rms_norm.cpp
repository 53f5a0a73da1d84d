// RMSNorm node over the last dim; saves x, the weight and rstd (N) for backward.
#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

class RmsNormNode final : public Node {
 public:
  explicit RmsNormNode(double eps) : eps_(eps) {}
  const char* name() const override { return "rms_norm"; }
  bool recomputable() const override { return true; }  // saves x and the weight

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2) fail("rms_norm: expected inputs {{x, weight}}, got {}", inputs.size());
    const KernelTable& kt = detail::kernels_of("rms_norm", {inputs[0], inputs[1]});
    const DType ct = detail::compute_dtype(kt, "rms_norm", {inputs[0], inputs[1]});
    detail::require(kt, Kernel::RmsNorm, ct, "rms_norm");
    Tensor x = detail::as_compute(inputs[0], ct);  // (..., C)
    Tensor w = detail::as_compute(inputs[1], ct);  // (C)
    if (x.ndim() < 1 || w.numel() != x.dim(-1))
      fail("rms_norm: weight {} does not match the last dimension of {}", w.describe(), x.describe());
    const int64_t C = x.dim(-1), N = C ? x.numel() / C : 0;
    Tensor y = Tensor::empty(x.shape(), ct, x.device());
    Tensor rstd = Tensor::empty({N}, stat_dtype(ct), x.device());  // (N)
    kt.rms_norm(x, w, eps_, y, rstd);
    if (save) {
      x_ = detail::saved_input(inputs[0], x);
      w_ = detail::saved_input(inputs[1], w);
      ct_ = ct;
      rstd_ = rstd;
    }
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(2);
    if (!grad_outputs[0].defined() || (!needs_grad[0] && !needs_grad[1])) return grads;
    if (!x_.defined()) fail("rms_norm: backward without a saved forward");
    const KernelTable& kt = x_.device().kernels();
    const DType ct = ct_;
    Tensor dy = detail::as_compute(grad_outputs[0], ct);
    const Tensor x = detail::as_compute(x_, ct), w = detail::as_compute(w_, ct);
    Tensor dx = Tensor::empty(x_.shape(), ct, x_.device());
    Tensor dw = needs_grad[1] ? Tensor::empty(w_.shape(), ct, x_.device()) : Tensor();
    kt.rms_norm_backward(dy, x, w, rstd_, dx, dw);
    if (needs_grad[0]) grads[0] = dx;
    grads[1] = dw;
    return grads;
  }

  void release_saved() override {
    x_ = Tensor();
    w_ = Tensor();
    rstd_ = Tensor();
  }

 private:
  double eps_;
  DType ct_ = ENG_F32;
  Tensor x_, w_, rstd_;
};

}  // namespace

std::unique_ptr<Node> make_rms_norm(double eps) { return std::make_unique<RmsNormNode>(eps); }

}  // namespace engine::rt::ops
