// Embedding node: gathers rows of the table; backward scatter-adds into a (V, C) table gradient.
#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

class EmbeddingNode final : public Node {
 public:
  const char* name() const override { return "embedding"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2) fail("embedding: expected inputs {{table, ids}}, got {}", inputs.size());
    detail::expect_rank(inputs[0], 2, "embedding", "table (V, C)");
    const KernelTable& kt = detail::kernels_of("embedding", {inputs[0], inputs[1]});
    const DType ct = detail::compute_dtype(kt, "embedding", {inputs[0]});
    Tensor ids = detail::as_index(inputs[1], "embedding", "ids");
    const int64_t V = inputs[0].dim(0), C = inputs[0].dim(1);
    // Devices whose memory the host cannot read check ids where the engine makes them (engine/train).
    if (const int64_t bad = kt.first_bad_id ? kt.first_bad_id(ids, V) : -1; bad >= 0)
      fail(
          "embedding: token id {} at position {} is outside the table's {} rows (tokenizer and model "
          "vocabulary "
          "disagree?)",
          ids.data<int32_t>()[bad], bad, V);
    Dims out_shape = ids.shape();
    out_shape.ndim += 1;
    out_shape[out_shape.ndim - 1] = C;
    Tensor out;  // (..., C)
    const DType stored = inputs[0].dtype();
    if (stored != ct && inputs[0].is_contiguous()) {
      // Gather the rows as stored (e.g. bf16), then convert only the (N, C) result.
      Tensor rows = Tensor::empty(out_shape, stored, inputs[0].device());
      kt.embedding(inputs[0], ids, rows);
      out = detail::convert(rows, ct);
    } else {
      Tensor table = detail::as_compute(inputs[0], ct);  // (V, C)
      out = Tensor::empty(out_shape, ct, table.device());
      kt.embedding(table, ids, out);
    }
    if (save) {
      ids_ = ids;
      vocab_ = V;
      table_dtype_ = ct;
    }
    return {out};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(2);
    if (!needs_grad[0] || !grad_outputs[0].defined()) return grads;
    if (!ids_.defined()) fail("embedding: backward without a saved forward");
    Tensor dy = detail::as_compute(grad_outputs[0], table_dtype_);  // (..., C)
    const int64_t C = dy.dim(-1);
    Tensor dt = Tensor::empty({vocab_, C}, table_dtype_, dy.device());  // (V, C)
    dy.device().kernels().embedding_backward(dy, ids_, dt);
    grads[0] = dt;
    return grads;
  }

  void release_saved() override { ids_ = Tensor(); }

 private:
  Tensor ids_;
  int64_t vocab_ = 0;
  DType table_dtype_ = ENG_F32;
};

}  // namespace

std::unique_ptr<Node> make_embedding() { return std::make_unique<EmbeddingNode>(); }

}  // namespace engine::rt::ops
