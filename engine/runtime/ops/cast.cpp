// Cast node: converts to a dtype; the gradient is converted back to the input's dtype.
#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

class CastNode final : public Node {
 public:
  explicit CastNode(eng_dtype dtype) : to_(dtype) {}
  const char* name() const override { return "cast"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 1) fail("cast: expected one input, got {}", inputs.size());
    if (save) from_ = inputs[0].dtype();
    return {detail::convert(inputs[0], to_)};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs,
                               const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !grad_outputs[0].defined()) return {Tensor()};
    if (!dtype_is_float(from_)) return {Tensor()};  // integer inputs get no gradient
    return {detail::convert(grad_outputs[0], from_)};
  }

  void release_saved() override {}

 private:
  DType to_;
  DType from_ = ENG_F32;
};

}  // namespace

std::unique_ptr<Node> make_cast(eng_dtype dtype) { return std::make_unique<CastNode>(dtype); }

}  // namespace engine::rt::ops
