// RoPE node (Hugging Face rotate_half, Llama 3 and linear scaling); saves only the positions.
#include "kernels/cpu/rope.hpp"  // RopeParams and rope_inv_freq: the host-side frequency table

#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

class RopeNode final : public Node {
 public:
  explicit RopeNode(const eng_rope_config& cfg) {
    params_.theta = cfg.theta;
    params_.rotary_dim = cfg.rotary_dim;
    params_.scaling = static_cast<int>(cfg.scaling);
    params_.factor = cfg.factor;
    params_.low_freq_factor = cfg.low_freq_factor;
    params_.high_freq_factor = cfg.high_freq_factor;
    params_.original_max_position = cfg.original_max_position;
    if (cfg.theta <= 0) fail("rope: rope_theta must be positive, got {}", cfg.theta);
    if (cfg.rotary_dim <= 0 || cfg.rotary_dim % 2 != 0)
      fail("rope: rotary_dim must be a positive even number, got {}", cfg.rotary_dim);
    if (cfg.scaling != ENG_ROPE_NONE && cfg.scaling != ENG_ROPE_LLAMA3 && cfg.scaling != ENG_ROPE_LINEAR)
      fail("rope: unknown rope scaling {} (known: none, llama3, linear)", cfg.scaling);
    if (cfg.scaling != ENG_ROPE_NONE && !(cfg.factor > 0))
      fail("rope: scaling factor must be positive, got {}", cfg.factor);
    if (cfg.scaling == ENG_ROPE_LLAMA3 && (!(cfg.high_freq_factor > cfg.low_freq_factor) ||
                                           cfg.low_freq_factor <= 0 || cfg.original_max_position <= 0))
      fail(
          "rope: llama3 scaling needs 0 < low_freq_factor < high_freq_factor and "
          "original_max_position_embeddings "
          "> 0 (got {}, {}, {})",
          cfg.low_freq_factor, cfg.high_freq_factor, cfg.original_max_position);
    inv_freq_ = cpu::rope_inv_freq(params_);
  }
  const char* name() const override { return "rope"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 2) fail("rope: expected inputs {{x, position_ids}}, got {}", inputs.size());
    detail::expect_rank(inputs[0], 4, "rope", "x (B, T, H, D)");
    const KernelTable& kt = detail::kernels_of("rope", {inputs[0], inputs[1]});
    const DType ct = detail::compute_dtype(kt, "rope", {inputs[0]});
    detail::require(kt, Kernel::Rope, ct, "rope");
    Tensor pos = detail::as_index(inputs[1], "rope", "position_ids");
    if (pos.ndim() != 2 || pos.dim(0) != inputs[0].dim(0) || pos.dim(1) != inputs[0].dim(1))
      fail("rope: position_ids {} must be (B, T) of x {}", pos.describe(), inputs[0].describe());
    if (inputs[0].dim(3) < params_.rotary_dim)
      fail("rope: rotary_dim {} exceeds the head dimension of {}", params_.rotary_dim, inputs[0].describe());
    if (save) {
      pos_ = pos;
      ct_ = ct;
    }
    return {apply(inputs[0], pos, ct, false)};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(2);
    if (!needs_grad[0] || !grad_outputs[0].defined()) return grads;
    if (!pos_.defined()) fail("rope: backward without a saved forward");
    grads[0] = apply(grad_outputs[0], pos_, ct_, true);
    return grads;
  }

  void release_saved() override { pos_ = Tensor(); }

 private:
  Tensor apply(const Tensor& in, const Tensor& pos, DType ct, bool inverse) const {
    Tensor x = detail::as_compute(in, ct);  // (B, T, H, D)
    Tensor y = Tensor::empty(x.shape(), ct, x.device());
    RopeArgs args;
    args.rotary_dim = params_.rotary_dim;
    args.inv_freq = inv_freq_.data();
    args.inverse = inverse;
    x.device().kernels().rope(x, pos, args, y);
    return y;
  }

  cpu::RopeParams params_;
  std::vector<float> inv_freq_;
  Tensor pos_;
  DType ct_ = ENG_F32;
};

}  // namespace

std::unique_ptr<Node> make_rope(const eng_rope_config& cfg) { return std::make_unique<RopeNode>(cfg); }

}  // namespace engine::rt::ops
