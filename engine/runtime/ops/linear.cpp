// Linear (x W^T + b) and batched matmul nodes; every product through the device's GEMM kernel (OpenBLAS on
// the CPU, cuBLASLt on CUDA).
#include <algorithm>

#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

// C (M, N) = op(A) (M, K) op(B) (K, N) [+ C when accumulate]; operands dense with the given row strides.
GemmArgs product_args(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                      bool accumulate) {
  GemmArgs g;
  g.trans_a = ta;
  g.trans_b = tb;
  g.M = M;
  g.N = N;
  g.K = K;
  g.lda = lda;
  g.ldb = ldb;
  g.ldc = N;
  g.beta = accumulate ? 1.0 : 0.0;
  return g;
}

class LinearNode final : public Node {
 public:
  const char* name() const override { return "linear"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2 && inputs.size() != 3)
      fail("linear: expected inputs {{x, weight, bias}}, got {}", inputs.size());
    const Tensor bias_in = inputs.size() == 3 ? inputs[2] : Tensor();
    detail::expect_rank(inputs[1], 2, "linear", "weight (out, in)");
    const KernelTable& kt = detail::kernels_of("linear", {inputs[0], inputs[1], bias_in});
    const DType ct = detail::compute_dtype(kt, "linear", {inputs[0], inputs[1], bias_in});
    detail::require(kt, Kernel::Gemm, ct, "linear");
    Tensor x = detail::as_compute(inputs[0], ct);  // (..., in)
    Tensor w = detail::as_compute(inputs[1], ct);  // (out, in)
    const int64_t in = w.dim(1), out_f = w.dim(0);
    if (x.ndim() < 1 || x.dim(-1) != in)
      fail("linear: input {} does not end in the weight's in_features {} (weight {})", x.describe(), in,
           w.describe());
    Tensor b;
    if (bias_in.defined()) {
      b = detail::as_compute(bias_in, ct);
      if (b.numel() != out_f) fail("linear: bias {} does not match out_features {}", b.describe(), out_f);
    }
    const int64_t N = x.numel() / std::max<int64_t>(in, 1);
    Dims ys = x.shape();
    ys[ys.ndim - 1] = out_f;
    Tensor y = Tensor::empty(ys, ct, x.device());  // (..., out)
    // y (N, out) = x (N, in) @ W^T (in, out) [+ b on every row]
    kt.gemm(product_args(false, true, N, out_f, in, in, in, false), x, w, y, b);
    if (save) {
      // x serves only the weight's gradient: a frozen weight (the base of LoRA) keeps W alone, so that x can go
      // as soon as its other holders are done with it (in backward the input gradient of down_proj, I
      // elements a token, was allocated while this node still held the SwiGLU output it no longer needed).
      x_ = input_needs_grad(1) ? detail::saved_input(inputs[0], x) : Tensor();
      x_shape_ = x.shape();
      w_ = detail::saved_input(inputs[1], w);
      ct_ = ct;
      has_bias_ = b.defined();
    }
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(needs_grad.size());
    if (!grad_outputs[0].defined()) return grads;
    if (!w_.defined()) fail("linear: backward without a saved forward");
    const bool want_dw = needs_grad.size() > 1 && needs_grad[1];
    if (want_dw && !x_.defined())
      fail("linear: backward asked for the weight's gradient, but its forward was told the weight needs none");
    const KernelTable& kt = w_.device().kernels();
    const DType ct = ct_;
    Tensor dy = detail::as_compute(grad_outputs[0], ct);  // (..., out)
    const int64_t in = w_.dim(1), out_f = w_.dim(0), N = x_shape_.numel() / std::max<int64_t>(in, 1);
    const Tensor x = want_dw ? detail::as_compute(x_, ct) : Tensor();   // (N, in)
    const Tensor w = needs_grad[0] ? detail::as_compute(w_, ct) : Tensor();  // (out, in)
    if (needs_grad[0]) {
      Tensor dx = Tensor::empty(x_shape_, ct, w_.device());
      // dx (N, in) = dy (N, out) @ W (out, in)
      kt.gemm(product_args(false, false, N, in, out_f, out_f, in, false), dy, w, dx, Tensor());
      grads[0] = dx;
    }
    if (want_dw) {
      Tensor dw = Tensor::empty(w_.shape(), ct, w_.device());
      // dW (out, in) = dy^T (out, N) @ x (N, in)
      kt.gemm(product_args(true, false, out_f, in, N, out_f, in, false), dy, x, dw, Tensor());
      grads[1] = dw;
    }
    if (needs_grad.size() > 2 && needs_grad[2] && has_bias_) {
      Tensor db = Tensor::empty({out_f}, ct, w_.device());
      kt.sum_rows(dy, db);  // db (out) = sum_n dy[n]
      grads[2] = db;
    }
    return grads;
  }

  void release_saved() override {
    x_ = Tensor();
    w_ = Tensor();
  }

 private:
  Tensor x_, w_;
  Dims x_shape_;
  DType ct_ = ENG_F32;
  bool has_bias_ = false;
};

class MatmulNode final : public Node {
 public:
  MatmulNode(bool trans_a, bool trans_b) : ta_(trans_a), tb_(trans_b) {}
  const char* name() const override { return "matmul"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2) fail("matmul: expected inputs {{a, b}}, got {}", inputs.size());
    const KernelTable& kt = detail::kernels_of("matmul", {inputs[0], inputs[1]});
    const DType ct = detail::compute_dtype(kt, "matmul", {inputs[0], inputs[1]});
    detail::require(kt, Kernel::Gemm, ct, "matmul");
    Tensor a = detail::as_compute(inputs[0], ct);
    Tensor b = detail::as_compute(inputs[1], ct);
    if (a.ndim() < 2 || b.ndim() < 2)
      fail("matmul: operands need rank >= 2, got {} and {}", a.describe(), b.describe());
    M_ = ta_ ? a.dim(-1) : a.dim(-2);
    K_ = ta_ ? a.dim(-2) : a.dim(-1);
    const int64_t kb = tb_ ? b.dim(-1) : b.dim(-2);
    N_ = tb_ ? b.dim(-2) : b.dim(-1);
    if (kb != K_)
      fail("matmul: inner dimensions differ: a {}{} and b {}{}", a.describe(), ta_ ? " (transposed)" : "",
           b.describe(), tb_ ? " (transposed)" : "");
    batch_ = a.numel() / std::max<int64_t>(1, M_ * K_);
    broadcast_b_ = b.ndim() == 2 && a.ndim() > 2;
    if (!broadcast_b_) {
      bool same = a.ndim() == b.ndim();
      for (int i = 0; same && i < a.ndim() - 2; ++i) same = a.dim(i) == b.dim(i);
      if (!same)
        fail("matmul: batch dimensions of {} and {} differ (b must have a's batch dims or none)",
             a.describe(), b.describe());
    }
    Dims ys = a.shape();
    ys[ys.ndim - 2] = M_;
    ys[ys.ndim - 1] = N_;
    Tensor y = Tensor::empty(ys, ct, a.device());  // (..., M, N)
    if (broadcast_b_ && !ta_) {
      // fold the batch into M: y (batch*M, N) = a (batch*M, K) @ op(b)
      kt.gemm(product_args(false, tb_, batch_ * M_, N_, K_, K_, tb_ ? K_ : N_, false), a, b, y, Tensor());
    } else {
      GemmArgs g = product_args(ta_, tb_, M_, N_, K_, ta_ ? M_ : K_, tb_ ? K_ : N_, false);
      g.batch = batch_;
      g.stride_a = M_ * K_;
      g.stride_b = broadcast_b_ ? 0 : K_ * N_;
      g.stride_c = M_ * N_;
      if (batch_ > 0) kt.gemm(g, a, b, y, Tensor());
    }
    if (save) {
      a_ = detail::saved_input(inputs[0], a);
      b_ = detail::saved_input(inputs[1], b);
      ct_ = ct;
    }
    return {y};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(2);
    if (!grad_outputs[0].defined()) return grads;
    if (!a_.defined()) fail("matmul: backward without a saved forward");
    const DType ct = ct_;
    Tensor dy = detail::as_compute(grad_outputs[0], ct);  // (..., M, N)
    const Tensor a = detail::as_compute(a_, ct), b = detail::as_compute(b_, ct);
    const KernelTable& kt = a.device().kernels();
    const int64_t M = M_, N = N_, K = K_;
    const int64_t sa = M * K, sb = broadcast_b_ ? 0 : K * N, sg = M * N;
    const int64_t lda = ta_ ? M : K, ldb = tb_ ? K : N;
    // One batched product per gradient; each batch's operands sit at i * stride.
    auto batched = [&](GemmArgs g, int64_t s_first, int64_t s_second, int64_t s_out) {
      g.batch = batch_;
      g.stride_a = s_first;
      g.stride_b = s_second;
      g.stride_c = s_out;
      return g;
    };
    if (needs_grad[0]) {
      Tensor da = Tensor::empty(a_.shape(), ct, a_.device());
      if (batch_ > 0) {
        if (!ta_)  // dA (M, K) = G (M, N) @ op(B)^T (N, K)
          kt.gemm(batched(product_args(false, !tb_, M, K, N, N, ldb, false), sg, sb, sa), dy, b, da,
                  Tensor());
        else  // dA (K, M) = op(B) (K, N) @ G^T (N, M)
          kt.gemm(batched(product_args(tb_, true, K, M, N, ldb, N, false), sb, sg, sa), b, dy, da, Tensor());
      }
      grads[0] = da;
    }
    if (needs_grad[1]) {
      Tensor db = Tensor::empty(b_.shape(), ct, b_.device());
      // dB of a broadcast b sums over the batches in order: one product per batch, accumulating after the
      // first.
      const int64_t rounds = broadcast_b_ ? batch_ : (batch_ > 0 ? 1 : 0);
      for (int64_t i = 0; i < rounds; ++i) {
        const bool acc = broadcast_b_ && i > 0;
        const Tensor ai = broadcast_b_ ? a.view({-1}).sliced(0, i * sa, (i + 1) * sa) : a;
        const Tensor gi = broadcast_b_ ? dy.view({-1}).sliced(0, i * sg, (i + 1) * sg) : dy;
        GemmArgs g =
            !tb_ ? product_args(!ta_, false, K, N, M, lda, N, acc)  // dB (K, N) = op(A)^T (K, M) @ G (M, N)
                 : product_args(true, ta_, N, K, M, N, lda, acc);   // dB (N, K) = G^T (N, M) @ op(A) (M, K)
        if (!broadcast_b_) g = batched(g, !tb_ ? sa : sg, !tb_ ? sg : sa, sb);
        if (!tb_)
          kt.gemm(g, ai, gi, db, Tensor());
        else
          kt.gemm(g, gi, ai, db, Tensor());
      }
      if (rounds == 0) kt.fill(db, 0.0);
      grads[1] = db;
    }
    return grads;
  }

  void release_saved() override {
    a_ = Tensor();
    b_ = Tensor();
  }

 private:
  bool ta_, tb_;
  int64_t M_ = 0, N_ = 0, K_ = 0, batch_ = 0;
  bool broadcast_b_ = false;
  DType ct_ = ENG_F32;
  Tensor a_, b_;
};

}  // namespace

std::unique_ptr<Node> make_linear() { return std::make_unique<LinearNode>(); }
std::unique_ptr<Node> make_matmul(bool trans_a, bool trans_b) {
  return std::make_unique<MatmulNode>(trans_a, trans_b);
}

}  // namespace engine::rt::ops
