#include "engine/runtime/ops/to_device.hpp"

#include "engine/core/error.hpp"

namespace engine::rt::ops {
namespace {

class ToDeviceNode final : public Node {
 public:
  explicit ToDeviceNode(Device& target) : target_(&target) {}
  const char* name() const override { return "to_device"; }

  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 1 || !inputs[0].defined()) fail("to_device: expected one defined input");
    if (save) from_ = &inputs[0].device();
    return {inputs[0].to_device(*target_)};
  }

  std::vector<Tensor> backward(const std::vector<Tensor>& grad_outputs, const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !grad_outputs[0].defined()) return {Tensor()};
    if (from_ == nullptr) fail("to_device: backward without a recorded forward");
    return {grad_outputs[0].to_device(*from_)};
  }

  void release_saved() override {}

 private:
  Device* target_;
  Device* from_ = nullptr;
};

}  // namespace

std::unique_ptr<Node> make_to_device(Device& target) { return std::make_unique<ToDeviceNode>(target); }

}  // namespace engine::rt::ops
