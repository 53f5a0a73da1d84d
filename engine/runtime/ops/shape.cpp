// Shape nodes: reshape, transpose and slice return views sharing storage (reshape copies first when its input
// is not contiguous); concat and contiguous copy. Their backwards move the gradient back into the input's
// shape.
#include <cstring>

#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

class ReshapeNode final : public Node {
 public:
  explicit ReshapeNode(const Dims& shape) : shape_(shape) {}
  const char* name() const override { return "reshape"; }
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 1) fail("reshape: expected one input, got {}", inputs.size());
    if (save) in_shape_ = inputs[0].shape();
    return {detail::contiguous(inputs[0]).view(shape_)};
  }
  std::vector<Tensor> backward(const std::vector<Tensor>& g, const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !g[0].defined()) return {Tensor()};
    return {detail::contiguous(g[0]).view(in_shape_)};
  }
  void release_saved() override {}

 private:
  Dims shape_, in_shape_;
};

class TransposeNode final : public Node {
 public:
  TransposeNode(int a, int b) : a_(a), b_(b) {}
  const char* name() const override { return "transpose"; }
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool) override {
    if (inputs.size() != 1) fail("transpose: expected one input, got {}", inputs.size());
    return {inputs[0].transposed(a_, b_)};
  }
  std::vector<Tensor> backward(const std::vector<Tensor>& g, const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !g[0].defined()) return {Tensor()};
    return {g[0].transposed(a_, b_)};
  }
  void release_saved() override {}

 private:
  int a_, b_;
};

class SliceNode final : public Node {
 public:
  SliceNode(int dim, int64_t start, int64_t end) : dim_(dim), start_(start), end_(end) {}
  const char* name() const override { return "slice"; }
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.size() != 1) fail("slice: expected one input, got {}", inputs.size());
    if (save) in_shape_ = inputs[0].shape();
    return {inputs[0].sliced(dim_, start_, end_)};
  }
  std::vector<Tensor> backward(const std::vector<Tensor>& g, const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !g[0].defined()) return {Tensor()};
    Tensor dx = Tensor::zeros(in_shape_, g[0].dtype(), g[0].device());
    Tensor window = dx.sliced(dim_, start_, end_);
    window.copy_from(g[0]);
    return {dx};
  }
  void release_saved() override {}

 private:
  int dim_;
  int64_t start_, end_;
  Dims in_shape_;
};

class ConcatNode final : public Node {
 public:
  explicit ConcatNode(int dim) : dim_(dim) {}
  const char* name() const override { return "concat"; }
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool save) override {
    if (inputs.empty()) fail("concat: no inputs");
    const Tensor& first = inputs[0];
    const int nd = first.ndim();
    const int d = dim_ < 0 ? dim_ + nd : dim_;
    if (d < 0 || d >= nd) fail("concat: dimension {} is out of range for {}", dim_, first.describe());
    detail::kernels_of("concat", {first});
    Dims out_shape = first.shape();
    out_shape[d] = 0;
    sizes_.clear();
    for (const Tensor& t : inputs) {
      if (t.ndim() != nd || t.dtype() != first.dtype())
        fail("concat: {} does not match {} in rank or dtype", t.describe(), first.describe());
      for (int i = 0; i < nd; ++i)
        if (i != d && t.dim(i) != first.dim(i))
          fail("concat along {}: {} and {} differ in dimension {}", d, t.describe(), first.describe(), i);
      out_shape[d] += t.dim(d);
      sizes_.push_back(t.dim(d));
    }
    Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
    // Each input is one strided copy into its slice of the output along d.
    int64_t at = 0;
    for (const Tensor& t : inputs) {
      if (&t.device() != &first.device())
        fail("concat: {} and {} live on different devices", t.describe(), first.describe());
      first.device().kernels().copy(out.sliced(d, at, at + t.dim(d)), t);
      at += t.dim(d);
    }
    if (save) d_ = d;
    return {out};
  }
  std::vector<Tensor> backward(const std::vector<Tensor>& g, const std::vector<bool>& needs_grad) override {
    std::vector<Tensor> grads(needs_grad.size());
    if (!g[0].defined()) return grads;
    int64_t at = 0;
    for (size_t i = 0; i < sizes_.size() && i < needs_grad.size(); ++i) {
      if (needs_grad[i]) grads[i] = g[0].sliced(d_, at, at + sizes_[i]);
      at += sizes_[i];
    }
    return grads;
  }
  void release_saved() override {}

 private:
  int dim_;
  int d_ = 0;
  std::vector<int64_t> sizes_;
};

class ContiguousNode final : public Node {
 public:
  const char* name() const override { return "contiguous"; }
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool) override {
    if (inputs.size() != 1) fail("contiguous: expected one input, got {}", inputs.size());
    return {detail::contiguous(inputs[0])};
  }
  std::vector<Tensor> backward(const std::vector<Tensor>& g, const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0] || !g[0].defined()) return {Tensor()};
    return {g[0]};
  }
  void release_saved() override {}
};

}  // namespace

std::unique_ptr<Node> make_reshape(int ndim, const int64_t* shape) {
  return std::make_unique<ReshapeNode>(Dims::from(shape, ndim));
}
std::unique_ptr<Node> make_transpose(int dim0, int dim1) {
  return std::make_unique<TransposeNode>(dim0, dim1);
}
std::unique_ptr<Node> make_slice(int dim, int64_t start, int64_t end) {
  return std::make_unique<SliceNode>(dim, start, end);
}
std::unique_ptr<Node> make_concat(int dim) { return std::make_unique<ConcatNode>(dim); }
std::unique_ptr<Node> make_contiguous() { return std::make_unique<ContiguousNode>(); }

}  // namespace engine::rt::ops
