// CustomOpNode: a plugin-registered op (eng_custom_op) as a tape Node. forward/backward call the plugin's
// functions through eng_tensor handles with a context whose grad_enabled is 0 (the ops the plugin uses inside
// are not recorded: the custom op is the recorded unit). Recorded, replayed under checkpointing and
// backpropagated exactly like a built-in op. The attribute block is copied and kept with the node. An op that
// declares ENG_CUSTOM_OP_BACKWARD_NO_INPUTS / _NO_OUTPUTS keeps only the shapes and dtypes of those (its
// backward gets NULL handles): nf4's dequantizing matmul keeps no (tokens, out) output alive until backward.
#pragma once

#include <vector>

#include "engine/host/host_session.hpp"
#include "engine/runtime/node.hpp"

namespace engine::host {

class CustomOpNode final : public rt::Node {
 public:
  CustomOpNode(HostSession& session, const CustomOpDef& def, const void* attrs);
  const char* name() const override { return def_->name.c_str(); }
  std::vector<rt::Tensor> forward(const std::vector<rt::Tensor>& inputs, bool save) override;
  std::vector<rt::Tensor> backward(const std::vector<rt::Tensor>& grad_outputs,
                                   const std::vector<bool>& needs_grad) override;
  void release_saved() override;

 private:
  HostSession* session_;
  const CustomOpDef* def_;
  std::vector<unsigned char> attrs_;
  struct Meta {
    rt::Dims shape;
    rt::DType dtype = ENG_F32;
    rt::Device* device = nullptr;
  };
  std::vector<rt::Tensor> inputs_, outputs_;  // saved for backward (empty where the op's flags say unread)
  std::vector<Meta> input_meta_, output_meta_;
};

}  // namespace engine::host
