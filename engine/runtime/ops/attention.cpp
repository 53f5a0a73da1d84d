// Attention node (causal, grouped-query, segment mask) and attention_with_cache for generation.
#include <cmath>

#include "engine/core/error.hpp"
#include "engine/runtime/kv_cache.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

void check_qkv(const Tensor& q, const Tensor& k, const Tensor& v, const char* op) {
  detail::expect_rank(q, 4, op, "q (B, T, Hq, D)");
  detail::expect_rank(k, 4, op, "k (B, T, Hkv, D)");
  detail::expect_rank(v, 4, op, "v (B, T, Hkv, D)");
  if (k.shape() != v.shape()) fail("{}: k {} and v {} differ in shape", op, k.describe(), v.describe());
  if (q.dim(0) != k.dim(0) || q.dim(3) != k.dim(3))
    fail("{}: q {} and k {} differ in batch or head_dim", op, q.describe(), k.describe());
  if (k.dim(2) == 0 || q.dim(2) % k.dim(2) != 0)
    fail("{}: query heads {} must be a multiple of key/value heads {}", op, q.dim(2), k.dim(2));
}

class AttentionNode final : public Node {
 public:
  explicit AttentionNode(double scale) : scale_(scale) {}
  const char* name() const override { return "attention"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 3 && inputs.size() != 4)
      fail("attention: expected inputs {{q, k, v, segment_ids}}, got {}", inputs.size());
    const Tensor seg_in = inputs.size() == 4 ? inputs[3] : Tensor();
    const KernelTable& kt = detail::kernels_of("attention", {inputs[0], inputs[1], inputs[2], seg_in});
    const DType ct = detail::compute_dtype(kt, "attention", {inputs[0], inputs[1], inputs[2]});
    detail::require(kt, Kernel::Attention, ct, "attention");
    check_qkv(inputs[0], inputs[1], inputs[2], "attention");
    Tensor q = detail::as_compute(inputs[0], ct);  // (B, T, Hq, D)
    Tensor k = detail::as_compute(inputs[1], ct);  // (B, T, Hkv, D)
    Tensor v = detail::as_compute(inputs[2], ct);  // (B, T, Hkv, D)
    if (q.dim(1) != k.dim(1))
      fail("attention: q {} and k {} differ in sequence length", q.describe(), k.describe());
    Tensor seg;
    if (inputs.size() == 4 && inputs[3].defined()) {
      seg = detail::as_index(inputs[3], "attention", "segment_ids");
      if (seg.ndim() != 2 || seg.dim(0) != q.dim(0) || seg.dim(1) != q.dim(1))
        fail("attention: segment_ids {} must be (B, T) of q {}", seg.describe(), q.describe());
    }
    AttentionShape d;
    d.B = q.dim(0);
    d.Tq = d.Tk = q.dim(1);
    d.Hq = q.dim(2);
    d.Hkv = k.dim(2);
    d.D = q.dim(3);
    d.kv_batch_stride = d.Tk * d.Hkv * d.D;
    Tensor out, lse;
    if (save && memo_out_.defined()) {  // the replay of a memoized forward: its results, not the kernel again
      if (memo_out_.shape() != q.shape() || memo_lse_.shape() != Dims{d.B, d.Hq, d.Tq})
        fail("attention: the replay's q {} does not match the memoized forward's output {}", q.describe(),
             memo_out_.describe());
      out = std::move(memo_out_);
      lse = std::move(memo_lse_);
      memo_out_ = memo_lse_ = Tensor();
    } else {
      out = Tensor::empty(q.shape(), ct, q.device());
      lse = Tensor::empty({d.B, d.Hq, d.Tq}, stat_dtype(ct), q.device());  // (B, Hq, T)
      kt.attention(d, q, k, v, seg, scale_, out, lse);
    }
    if (!save && memoize_) {
      memo_out_ = out;
      memo_lse_ = lse;
    }
    if (save) {
      q_ = q;
      k_ = k;
      v_ = v;
      seg_ = seg;
      out_ = out;
      lse_ = lse;
      dims_ = d;
    }
    return {out};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(needs_grad.size());
    if (!grad_outputs[0].defined()) return grads;
    if (!q_.defined()) fail("attention: backward without a saved forward");
    const DType ct = q_.dtype();
    Tensor dout = detail::as_compute(grad_outputs[0], ct);
    Tensor dq = Tensor::empty(q_.shape(), ct, q_.device());
    Tensor dk = Tensor::empty(k_.shape(), ct, q_.device());
    Tensor dv = Tensor::empty(v_.shape(), ct, q_.device());
    q_.device().kernels().attention_backward(dims_, q_, k_, v_, seg_, scale_, out_, lse_, dout, dq, dk, dv);
    if (needs_grad[0]) grads[0] = dq;
    if (needs_grad[1]) grads[1] = dk;
    if (needs_grad[2]) grads[2] = dv;
    return grads;
  }

  void release_saved() override { q_ = k_ = v_ = seg_ = out_ = lse_ = memo_out_ = memo_lse_ = Tensor(); }

  // In a checkpointed block: the output and its log-sum-exp (what backward needs besides q, k, v, which the
  // replay recomputes anyway) stay, so the replay skips the attention forward, at long context the largest part
  // of a replayed block (its FLOPs grow with tokens squared).
  bool memoize() override {
    memoize_ = true;
    return true;
  }
  std::vector<Tensor> memo() const override { return {memo_out_, memo_lse_}; }

 private:
  double scale_;
  bool memoize_ = false;
  Tensor q_, k_, v_, seg_, out_, lse_;
  Tensor memo_out_, memo_lse_;
  AttentionShape dims_;
};

}  // namespace

std::unique_ptr<Node> make_attention(double softmax_scale) {
  return std::make_unique<AttentionNode>(softmax_scale);
}

Tensor attention_with_cache(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, double softmax_scale,
                            KvCache& cache, int layer) {
  check_qkv(q_in, k_in, v_in, "attention_with_cache");
  if (layer < 0 || static_cast<size_t>(layer) >= cache.k.size())
    fail("attention_with_cache: layer {} is outside the cache's {} layers", layer, cache.k.size());
  Tensor& ck = cache.k[static_cast<size_t>(layer)];  // (B, max_len, Hkv, D)
  Tensor& cv = cache.v[static_cast<size_t>(layer)];
  const KernelTable& kt = detail::kernels_of("attention_with_cache", {q_in, k_in, v_in, ck});
  const DType ct = ck.dtype();
  if (const char* why = kt.unsupported(Kernel::Attention, ct))
    fail("attention_with_cache: a {} cache of {} cannot be used here: {}", kt.device_name, ck.describe(),
         why);
  Tensor q = detail::as_compute(q_in, ct);
  Tensor k = detail::as_compute(k_in, ct);
  Tensor v = detail::as_compute(v_in, ct);
  const int64_t B = q.dim(0), Tn = q.dim(1), Hkv = k.dim(2), D = q.dim(3);
  if (ck.dim(0) != B || ck.dim(2) != Hkv || ck.dim(3) != D)
    fail("attention_with_cache: cache {} does not fit k {} (batch, kv heads, head_dim)", ck.describe(),
         k.describe());
  if (k.dim(1) != Tn)
    fail("attention_with_cache: q {} and k {} differ in new tokens", q.describe(), k.describe());
  const int64_t past = cache.length;
  if (past + Tn > cache.max_len)
    fail("attention_with_cache: {} cached + {} new positions exceed the cache's max_len {}", past, Tn,
         cache.max_len);
  // Append the new keys and values at rows [past, past + Tn) of every batch (one strided copy each).
  kt.copy(ck.sliced(1, past, past + Tn), k);
  kt.copy(cv.sliced(1, past, past + Tn), v);
  AttentionShape d;
  d.B = B;
  d.Tq = Tn;
  d.Tk = past + Tn;
  d.Hq = q.dim(2);
  d.Hkv = Hkv;
  d.D = D;
  d.q_offset = past;
  d.kv_batch_stride = cache.max_len * Hkv * D;
  Tensor out = Tensor::empty(q.shape(), ct, q.device());
  kt.attention(d, q, ck, cv, Tensor(), softmax_scale, out, Tensor());
  return out;
}

}  // namespace engine::rt::ops
