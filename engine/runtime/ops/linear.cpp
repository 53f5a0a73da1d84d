// Linear (x W^T + b) and batched matmul nodes; all products through the OpenBLAS GEMM kernel.
#include <algorithm>

#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/reduce.hpp"

namespace engine::rt::ops {

namespace {

class LinearNode final : public Node {
 public:
  const char* name() const override { return "linear"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2 && inputs.size() != 3)
      fail("linear: expected inputs {{x, weight, bias}}, got {}", inputs.size());
    const Tensor bias_in = inputs.size() == 3 ? inputs[2] : Tensor();
    detail::expect_rank(inputs[1], 2, "linear", "weight (out, in)");
    auto& pool = detail::cpu_pool(inputs[0], "linear");
    const DType ct = detail::compute_dtype("linear", {inputs[0], inputs[1], bias_in});
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
    detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      T* yp = y.data<T>();
      if (b.defined()) {
        const T* bp = b.data<T>();
        pool.parallel_for(N, 64, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) std::copy(bp, bp + out_f, yp + r * out_f);
        });
      }
      // y (N, out) = x (N, in) @ W^T (in, out) [+ y holding the bias]
      cpu::gemm<T>(false, true, N, out_f, in, T(1), x.data<T>(), in, w.data<T>(), in,
                   b.defined() ? T(1) : T(0), yp, out_f);
    });
    if (save) {
      x_ = detail::saved_input(inputs[0], x);
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
    if (!x_.defined()) fail("linear: backward without a saved forward");
    auto& pool = detail::cpu_pool(x_, "linear");
    const DType ct = ct_;
    Tensor dy = detail::as_compute(grad_outputs[0], ct);  // (..., out)
    const int64_t in = w_.dim(1), out_f = w_.dim(0), N = x_.numel() / std::max<int64_t>(in, 1);
    const Tensor x =
        needs_grad.size() > 1 && needs_grad[1] ? detail::as_compute(x_, ct) : Tensor();  // (N, in)
    const Tensor w = needs_grad[0] ? detail::as_compute(w_, ct) : Tensor();              // (out, in)
    detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      if (needs_grad[0]) {
        Tensor dx = Tensor::empty(x_.shape(), ct, x_.device());
        // dx (N, in) = dy (N, out) @ W (out, in)
        cpu::gemm<T>(false, false, N, in, out_f, T(1), dy.data<T>(), out_f, w.data<T>(), in, T(0),
                     dx.data<T>(), in);
        grads[0] = dx;
      }
      if (needs_grad.size() > 1 && needs_grad[1]) {
        Tensor dw = Tensor::empty(w_.shape(), ct, x_.device());
        // dW (out, in) = dy^T (out, N) @ x (N, in)
        cpu::gemm<T>(true, false, out_f, in, N, T(1), dy.data<T>(), out_f, x.data<T>(), in, T(0),
                     dw.data<T>(), in);
        grads[1] = dw;
      }
      if (needs_grad.size() > 2 && needs_grad[2] && has_bias_) {
        Tensor db = Tensor::empty({out_f}, ct, x_.device());
        cpu::sum_rows<T>(pool, dy.data<T>(), N, out_f, db.data<T>());  // db (out) = sum_n dy[n]
        grads[2] = db;
      }
    });
    return grads;
  }

  void release_saved() override {
    x_ = Tensor();
    w_ = Tensor();
  }

 private:
  Tensor x_, w_;
  DType ct_ = ENG_F32;
  bool has_bias_ = false;
};

// One operand of a product as stored: op(X) = X or X^T, with its leading dimension.
template <typename T>
struct Operand {
  const T* p;
  bool t;
  int64_t ld;
};

// C (M, N) = op(A) (M, K) op(B) (K, N) [+ C when accumulate]
template <typename T>
void product(Operand<T> a, Operand<T> b, int64_t M, int64_t N, int64_t K, T* c, bool accumulate) {
  cpu::gemm<T>(a.t, b.t, M, N, K, T(1), a.p, a.ld, b.p, b.ld, accumulate ? T(1) : T(0), c, N);
}

class MatmulNode final : public Node {
 public:
  MatmulNode(bool trans_a, bool trans_b) : ta_(trans_a), tb_(trans_b) {}
  const char* name() const override { return "matmul"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2) fail("matmul: expected inputs {{a, b}}, got {}", inputs.size());
    detail::cpu_pool(inputs[0], "matmul");  // the products run on the CPU
    const DType ct = detail::compute_dtype("matmul", {inputs[0], inputs[1]});
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
    detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      const int64_t sa = M_ * K_, sb = broadcast_b_ ? 0 : K_ * N_;
      if (broadcast_b_ && !ta_) {
        // fold the batch into M: y (batch*M, N) = a (batch*M, K) @ op(b)
        product<T>({a.data<T>(), false, K_}, {b.data<T>(), tb_, tb_ ? K_ : N_}, batch_ * M_, N_, K_,
                   y.data<T>(), false);
        return;
      }
      for (int64_t i = 0; i < batch_; ++i)
        product<T>({a.data<T>() + i * sa, ta_, ta_ ? M_ : K_}, {b.data<T>() + i * sb, tb_, tb_ ? K_ : N_}, M_,
                   N_, K_, y.data<T>() + i * M_ * N_, false);
    });
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
    const int64_t M = M_, N = N_, K = K_;
    detail::dispatch(ct, [&](auto tag) {
      using T = decltype(tag);
      const T* A = a.data<T>();
      const T* B = b.data<T>();
      const T* G = dy.data<T>();
      const int64_t sa = M * K, sb = broadcast_b_ ? 0 : K * N, sg = M * N;
      const int64_t lda = ta_ ? M : K, ldb = tb_ ? K : N;
      if (needs_grad[0]) {
        Tensor da = Tensor::empty(a_.shape(), ct, a_.device());
        for (int64_t i = 0; i < batch_; ++i) {
          T* D = da.data<T>() + i * sa;
          if (!ta_)  // dA (M, K) = G (M, N) @ op(B)^T (N, K)
            product<T>({G + i * sg, false, N}, {B + i * sb, !tb_, ldb}, M, K, N, D, false);
          else  // dA (K, M) = op(B) (K, N) @ G^T (N, M)
            product<T>({B + i * sb, tb_, ldb}, {G + i * sg, true, N}, K, M, N, D, false);
        }
        grads[0] = da;
      }
      if (needs_grad[1]) {
        Tensor db = Tensor::empty(b_.shape(), ct, b_.device());
        for (int64_t i = 0; i < batch_; ++i) {
          T* D = db.data<T>() + i * sb;
          const bool acc = broadcast_b_ && i > 0;  // broadcast b: batches summed in order
          if (!tb_)                                // dB (K, N) = op(A)^T (K, M) @ G (M, N)
            product<T>({A + i * sa, !ta_, lda}, {G + i * sg, false, N}, K, N, M, D, acc);
          else  // dB (N, K) = G^T (N, M) @ op(A) (M, K)
            product<T>({G + i * sg, true, N}, {A + i * sa, ta_, lda}, N, K, M, D, acc);
        }
        if (batch_ == 0) db.device().fill_zero(db.raw_data(), db.nbytes());
        grads[1] = db;
      }
    });
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
