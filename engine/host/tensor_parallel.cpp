#include "engine/host/tensor_parallel.hpp"

#include <memory>

#include "engine/core/error.hpp"
#include "engine/host/linear_seam.hpp"
#include "engine/runtime/kernel_table.hpp"
#include "engine/runtime/node.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::host {

namespace {

// A new handle on the same values (contiguous, so that a collective may act on it in place when needed).
rt::Tensor same(const rt::Tensor& t) { return t.contiguous().view(t.shape()); }

// t summed over the ranks into a fresh tensor (t itself is left as it is: the tape may hold it).
rt::Tensor summed(rt::Communicator& comm, const rt::Tensor& t) {
  rt::Tensor out = t.contiguous().clone();
  comm.all_reduce_sum(out);
  return out;
}

class TpCopyNode final : public rt::Node {
 public:
  explicit TpCopyNode(rt::Communicator& comm) : comm_(&comm) {}
  const char* name() const override { return "tp_copy"; }
  std::vector<rt::Tensor> forward(const std::vector<rt::Tensor>& in, bool) override {
    if (in.size() != 1) fail("tp_copy: expected one input, got {}", in.size());
    return {same(in[0])};
  }
  std::vector<rt::Tensor> backward(const std::vector<rt::Tensor>& g, const std::vector<bool>& needs_grad) override {
    // Every rank reaches this backward (the same graph everywhere), with or without a gradient: a rank whose
    // gradient is absent contributes zeros, so that the collective is never skipped on one rank alone.
    if (!needs_grad[0]) return {rt::Tensor()};
    if (!g[0].defined()) fail("tp_copy: backward without a gradient (the ranks would disagree on the collective)");
    return {summed(*comm_, g[0])};
  }
  void release_saved() override {}

 private:
  rt::Communicator* comm_;
};

class TpReduceNode final : public rt::Node {
 public:
  explicit TpReduceNode(rt::Communicator& comm) : comm_(&comm) {}
  const char* name() const override { return "tp_reduce"; }
  std::vector<rt::Tensor> forward(const std::vector<rt::Tensor>& in, bool) override {
    if (in.size() != 1) fail("tp_reduce: expected one input, got {}", in.size());
    return {summed(*comm_, in[0])};
  }
  std::vector<rt::Tensor> backward(const std::vector<rt::Tensor>& g, const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !g[0].defined()) return {rt::Tensor()};
    return {same(g[0])};
  }
  void release_saved() override {}

 private:
  rt::Communicator* comm_;
};

// The cross-entropy of hidden (N, C) against this rank's rows of the output projection (V/world, C), summed
// over the ranks (see tp_linear_cross_entropy). Inputs {hidden, weight}; attributes: the labels as this rank
// sees them, made on the host.
//   forward: lse_r (N) = log-sum-exp of this rank's logits, by the chunked kernel (labels: any row of the
//            slice for labelled rows, so that every labelled row gets its lse); z_r = the sum over the rows
//            whose label this rank holds of their label logit (an embedding lookup of those rows of the
//            weight, times hidden, summed). The ranks all-gather lse_r and all-reduce z_r; on the host,
//            lse = log(sum_r exp(lse_r)) per row and loss = scale * (sum of lse over labelled rows - z).
//   backward: dlogits = scale * dloss * (exp(logits - lse) - onehot(label where this rank holds it)), through
//            the chunked backward kernel with the global lse and the weight extended by one zero row that
//            stands for "the label is on another rank" (its logit is 0 and its row contributes nothing to the
//            hidden's gradient; its own gradient row is dropped). The hidden's gradient is a partial sum over
//            the ranks' vocabularies: the caller puts hidden through tp_copy.
class TpLinearCrossEntropyNode final : public rt::Node {
 public:
  TpLinearCrossEntropyNode(rt::Communicator& comm, const std::vector<int32_t>& labels, int64_t ignore,
                           double scale, int64_t rows_per_rank, int rank)
      : comm_(&comm), ignore_(ignore), scale_(scale) {
    const int64_t first = rows_per_rank * rank;
    const size_t n = labels.size();
    valid_.resize(n);
    owned_.resize(n);
    gather_.resize(n);
    mask_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int32_t l = labels[i];
      const bool labelled = l != ignore;
      const bool mine = labelled && l >= first && l < first + rows_per_rank;
      valid_[i] = labelled ? 0 : static_cast<int32_t>(ignore);
      owned_[i] = !labelled ? static_cast<int32_t>(ignore)
                  : mine    ? static_cast<int32_t>(l - first)
                            : static_cast<int32_t>(rows_per_rank);  // the zero row: held elsewhere
      gather_[i] = mine ? static_cast<int32_t>(l - first) : 0;
      mask_[i] = mine ? 1.0f : 0.0f;
    }
  }
  const char* name() const override { return "tp_linear_cross_entropy"; }

  std::vector<rt::Tensor> forward(const std::vector<rt::Tensor>& in, bool save) override {
    if (in.size() != 2) fail("tp_linear_cross_entropy: expected inputs {{hidden, weight}}, got {}", in.size());
    const rt::KernelTable& kt = rt::ops::detail::kernels_of("tp_linear_cross_entropy", {in[0], in[1]});
    const rt::DType ct = rt::ops::detail::compute_dtype(kt, "tp_linear_cross_entropy", {in[0], in[1]});
    rt::ops::detail::require(kt, rt::Kernel::LinearCrossEntropy, ct, "tp_linear_cross_entropy");
    const rt::Tensor h = rt::ops::detail::as_compute(in[0], ct), w = rt::ops::detail::as_compute(in[1], ct);
    const int64_t N = h.dim(0), C = h.dim(1);
    if (w.dim(1) != C || static_cast<size_t>(N) != valid_.size())
      fail("tp_linear_cross_entropy: hidden {}, weight {} and {} labels do not match", h.describe(), w.describe(),
           valid_.size());
    rt::Device& dev = h.device();
    const rt::DType st = rt::stat_dtype(ct);
    const rt::Tensor valid = rt::Tensor::from_vector(rt::Dims{N}, ENG_I32, dev, valid_);
    rt::Tensor lse_r = rt::Tensor::empty({N}, st, dev), unused = rt::Tensor::empty(rt::Dims{}, st, dev);
    kt.linear_cross_entropy(h, w, valid, ignore_, 0.0, 0, unused, lse_r);
    // z_r: the label logits this rank holds, summed (rows it does not hold are masked out).
    const rt::Tensor ids = rt::Tensor::from_vector(rt::Dims{N}, ENG_I32, dev, gather_);
    const rt::Tensor mask = rt::Tensor::from_vector(rt::Dims{N, 1}, ENG_F32, dev, mask_).to(ct);
    rt::Tensor rows = rt::ops::make_embedding()->forward({w, ids}, false)[0];               // (N, C)
    rows = rt::ops::make_mul()->forward({rt::ops::make_mul()->forward({h, rows}, false)[0], mask}, false)[0];
    rt::Tensor z = rt::ops::make_sum()->forward({rows}, false)[0].to(st).contiguous().clone();  // ()
    const int W = comm_->world_size();
    rt::Tensor all = rt::Tensor::empty(rt::Dims{N * W}, lse_r.dtype(), dev);
    comm_->all_gather(lse_r, all);
    comm_->all_reduce_sum(z);
    // On the device (no synchronisation): the per-row log-sum-exp over the ranks is the cross-entropy kernel's
    // own lse of the (N, W) table of the ranks' lse_r; the loss adds it up over the labelled rows.
    const rt::Tensor table = all.view(rt::Dims{W, N}).transposed(0, 1).contiguous();  // (N, W)
    rt::Tensor lse = rt::Tensor::empty({N}, st, dev), unused2 = rt::Tensor::empty(rt::Dims{}, st, dev);
    dev.kernels().cross_entropy(table, valid, ignore_, 0.0, unused2, lse);  // lse: 0 on unlabelled rows
    const rt::Tensor total = rt::ops::make_sum()->forward({lse}, false)[0].to(st);
    rt::Tensor loss = rt::ops::make_add()->forward({total, rt::ops::make_scale(-1.0)->forward({z}, false)[0]}, false)[0];
    loss = rt::ops::make_scale(scale_)->forward({loss}, false)[0];
    if (save) {
      h_ = rt::ops::detail::saved_input(in[0], h);
      w_ = rt::ops::detail::saved_input(in[1], w);
      ct_ = ct;
      lse_ = lse;
    }
    return {loss.to(st)};
  }

  std::vector<rt::Tensor> backward(const std::vector<rt::Tensor>& g, const std::vector<bool>& needs_grad) override {
    std::vector<rt::Tensor> grads(2);
    if (!g[0].defined() || (!needs_grad[0] && !needs_grad[1])) return grads;
    if (!h_.defined()) fail("tp_linear_cross_entropy: backward without a saved forward");
    const rt::Tensor h = rt::ops::detail::as_compute(h_, ct_), w = rt::ops::detail::as_compute(w_, ct_);
    rt::Device& dev = h.device();
    const int64_t V = w.dim(0), C = w.dim(1), N = h.dim(0);
    rt::Tensor w_ext = rt::Tensor::zeros(rt::Dims{V + 1, C}, ct_, dev);
    w_ext.sliced(0, 0, V).copy_from(w);
    const rt::Tensor owned = rt::Tensor::from_vector(rt::Dims{N}, ENG_I32, dev, owned_);
    rt::Tensor gh = rt::Tensor::empty(h.shape(), ct_, dev), gw = rt::Tensor::empty(w_ext.shape(), ct_, dev);
    dev.kernels().linear_cross_entropy_backward(h, w_ext, owned, lse_, ignore_, scale_, 0, g[0], gh, gw);
    if (needs_grad[0]) grads[0] = gh;
    if (needs_grad[1]) grads[1] = gw.sliced(0, 0, V).contiguous();
    return grads;
  }

  void release_saved() override { h_ = w_ = lse_ = rt::Tensor(); }

 private:
  rt::Communicator* comm_;
  int64_t ignore_;
  double scale_;
  std::vector<int32_t> valid_, owned_, gather_;
  std::vector<float> mask_;
  rt::DType ct_ = ENG_F32;
  rt::Tensor h_, w_, lse_;
};

}  // namespace

int split_dim(const rt::Param& p) {
  const rt::Split& s = p.root->placement.split;
  return s.applied && !s.gathered ? s.dim : -1;
}

rt::Tensor tp_embedding(HostSession& session, bool grad_enabled, rt::Param& table, const rt::Tensor& ids) {
  rt::Tensor w = param_input(session, grad_enabled, table);  // (V/world, C)
  const int64_t rows = w.dim(0), first = rows * session.model_communicator().rank();
  if (ids.dtype() != ENG_I32) fail("embedding: ids must be int32, got {}", ids.describe());
  std::vector<int32_t> copied;
  const std::vector<int32_t>* known = session.host_ids_of(ids);  // the batch's ids: no copy from the device
  if (known == nullptr) {
    copied.resize(static_cast<size_t>(ids.numel()));
    ids.contiguous().copy_to_host(copied.data(), copied.size() * sizeof(int32_t));
  }
  const std::vector<int32_t>& all = known != nullptr ? *known : copied;
  std::vector<int32_t> local(all.size());
  std::vector<float> mask(all.size());
  const int64_t vocab = table.shape()[0];
  for (size_t i = 0; i < all.size(); ++i) {
    const int64_t id = all[i];
    if (id < 0 || id >= vocab)
      fail("embedding: token id {} at position {} is outside the vocabulary of {}", id, i, vocab);
    const bool mine = id >= first && id < first + rows;
    local[i] = mine ? static_cast<int32_t>(id - first) : 0;
    mask[i] = mine ? 1.0f : 0.0f;
  }
  rt::Dims mask_shape = ids.shape();  // (..., 1): one factor per looked-up row
  mask_shape[mask_shape.ndim] = 1;
  mask_shape.ndim += 1;
  const rt::Tensor local_ids = rt::Tensor::from_vector(ids.shape(), ENG_I32, ids.device(), local);
  rt::Tensor e = session.apply1(grad_enabled, rt::ops::make_embedding(), {w, local_ids});  // (..., C)
  const rt::Tensor m = rt::Tensor::from_vector(mask_shape, ENG_F32, ids.device(), mask).to(e.dtype());
  e = session.apply1(grad_enabled, rt::ops::make_mul(), {e, m});
  return tp_reduce(session, grad_enabled, e);
}

rt::Tensor tp_linear_cross_entropy(HostSession& session, bool grad_enabled, const rt::Tensor& hidden,
                                   rt::Param& weight, const std::vector<int32_t>& labels, int64_t ignore_index,
                                   double scale) {
  const rt::Tensor h = tp_copy(session, grad_enabled, hidden);
  rt::Tensor w = param_input(session, grad_enabled, weight);
  return session.apply1(grad_enabled,
                        std::make_unique<TpLinearCrossEntropyNode>(session.model_communicator(), labels, ignore_index,
                                                                   scale, w.dim(0), session.model_communicator().rank()),
                        {h, w});
}

rt::Tensor tp_copy(HostSession& session, bool grad_enabled, const rt::Tensor& x) {
  return session.apply1(grad_enabled, std::make_unique<TpCopyNode>(session.model_communicator()), {x});
}

rt::Tensor tp_reduce(HostSession& session, bool grad_enabled, const rt::Tensor& y) {
  return session.apply1(grad_enabled, std::make_unique<TpReduceNode>(session.model_communicator()), {y});
}

}  // namespace engine::host
