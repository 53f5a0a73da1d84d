// SiLU and SwiGLU nodes; save their inputs (the backward recomputes the sigmoid).

#include <atomic>

#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

std::atomic<int64_t> g_swiglu_in_place{0};

class SiluNode final : public Node {
 public:
  const char* name() const override { return "silu"; }
  bool recomputable() const override { return true; }  // saves x

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 1) fail("silu: expected one input, got {}", inputs.size());
    const KernelTable& kt = detail::kernels_of("silu", {inputs[0]});
    const DType ct = detail::compute_dtype(kt, "silu", {inputs[0]});
    detail::require(kt, Kernel::Silu, ct, "silu");
    Tensor x = detail::as_compute(inputs[0], ct);
    Tensor y = Tensor::empty(x.shape(), ct, x.device());
    kt.silu(x, y);
    if (save) x_ = x;
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !grad_outputs[0].defined()) return {Tensor()};
    if (!x_.defined()) fail("silu: backward without a saved forward");
    Tensor dy = detail::as_compute(grad_outputs[0], x_.dtype());
    Tensor dx = Tensor::empty(x_.shape(), x_.dtype(), x_.device());
    x_.device().kernels().silu_backward(dy, x_, dx);
    return {dx};
  }

  void release_saved() override { x_ = Tensor(); }

 private:
  Tensor x_;
};

class SwigluNode final : public Node {
 public:
  const char* name() const override { return "swiglu"; }
  bool recomputable() const override { return true; }  // saves gate and up

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2) fail("swiglu: expected inputs {{gate, up}}, got {}", inputs.size());
    const KernelTable& kt = detail::kernels_of("swiglu", {inputs[0], inputs[1]});
    const DType ct = detail::compute_dtype(kt, "swiglu", {inputs[0], inputs[1]});
    detail::require(kt, Kernel::Swiglu, ct, "swiglu");
    Tensor g = detail::as_compute(inputs[0], ct);
    Tensor u = detail::as_compute(inputs[1], ct);
    if (g.shape() != u.shape()) fail("swiglu: gate {} and up {} differ in shape", g.describe(), u.describe());
    Tensor y = Tensor::empty(g.shape(), ct, g.device());
    kt.swiglu(g, u, y);
    if (save) {
      g_ = g;
      u_ = u;
    }
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(2);
    if (!grad_outputs[0].defined() || (!needs_grad[0] && !needs_grad[1])) return grads;
    if (!g_.defined()) fail("swiglu: backward without a saved forward");
    const DType ct = g_.dtype();
    Tensor dy = detail::as_compute(grad_outputs[0], ct);
    // The gradients overwrite the saved gate and up when nothing else holds them (after a checkpoint replay,
    // or once the forward's caller let go): two (tokens, intermediate) buffers fewer at the MLP's backward,
    // where a block's backward peaks. Each element is read before it is written (kernels' contract).
    const bool in_place = g_.sole_owner() && u_.sole_owner() && needs_grad[0] && needs_grad[1];
    if (in_place) {
      grads[0] = g_;
      grads[1] = u_;
      g_swiglu_in_place.fetch_add(1, std::memory_order_relaxed);
    } else {
      if (needs_grad[0]) grads[0] = Tensor::empty(g_.shape(), ct, g_.device());
      if (needs_grad[1]) grads[1] = Tensor::empty(g_.shape(), ct, g_.device());
    }
    g_.device().kernels().swiglu_backward(dy, g_, u_, grads[0], grads[1]);
    if (in_place) release_saved();
    return grads;
  }

  void release_saved() override {
    g_ = Tensor();
    u_ = Tensor();
  }

 private:
  Tensor g_, u_;
};

}  // namespace

std::unique_ptr<Node> make_silu() { return std::make_unique<SiluNode>(); }
std::unique_ptr<Node> make_swiglu() { return std::make_unique<SwigluNode>(); }
int64_t swiglu_in_place_backwards() { return g_swiglu_in_place.load(std::memory_order_relaxed); }

}  // namespace engine::rt::ops
