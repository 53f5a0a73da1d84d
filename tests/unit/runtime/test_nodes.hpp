// Small elementwise Nodes computing in f64 on CPU tensors (any float input; f64 outputs) for exercising the
// autograd tape independently of the built-in ops: each saves exactly what its backward needs and counts
// forward/backward/release calls.
#pragma once

#include <cmath>
#include <memory>
#include <vector>

#include "engine/runtime/node.hpp"

namespace engine::rt::testing {

struct NodeCounters {
  int forwards = 0;
  int forwards_saving = 0;
  int backwards = 0;
  int releases = 0;
};

inline Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), ENG_F64, t.device()); }
// t as contiguous f64 (inputs of other dtypes are converted; outputs are always f64).
inline Tensor f64(const Tensor& t) {
  return t.dtype() == ENG_F64 ? t.contiguous() : t.to(ENG_F64).contiguous();
}

// Elementwise binary/unary helpers over contiguous f64 tensors.
template <typename F>
Tensor map1(const Tensor& a, F f) {
  Tensor ac = f64(a), out = like(a);
  const double* x = ac.data<double>();
  double* o = out.data<double>();
  for (int64_t i = 0; i < a.numel(); ++i) o[i] = f(x[i]);
  return out;
}
template <typename F>
Tensor map2(const Tensor& a, const Tensor& b, F f) {
  Tensor ac = f64(a), bc = f64(b), out = like(a);
  const double* x = ac.data<double>();
  const double* y = bc.data<double>();
  double* o = out.data<double>();
  for (int64_t i = 0; i < a.numel(); ++i) o[i] = f(x[i], y[i]);
  return out;
}

class CountingNode : public Node {
 public:
  explicit CountingNode(NodeCounters* c) : c_(c) {}

 protected:
  void on_forward(bool save) {
    if (c_) {
      ++c_->forwards;
      if (save) ++c_->forwards_saving;
    }
  }
  void on_backward() {
    if (c_) ++c_->backwards;
  }
  void on_release() {
    if (c_) ++c_->releases;
  }
  NodeCounters* c_;
};

// {a, b} -> a * b
class MulNode final : public CountingNode {
 public:
  using CountingNode::CountingNode;
  const char* name() const override { return "test.mul"; }
  std::vector<Tensor> forward(const std::vector<Tensor>& in, bool save) override {
    on_forward(save);
    if (save) a_ = in[0], b_ = in[1];
    return {map2(in[0], in[1], [](double x, double y) { return x * y; })};
  }
  std::vector<Tensor> backward(const std::vector<Tensor>& g, const std::vector<bool>& needs) override {
    on_backward();
    std::vector<Tensor> r(2);
    if (needs[0]) r[0] = map2(g[0], b_, [](double x, double y) { return x * y; });
    if (needs[1]) r[1] = map2(g[0], a_, [](double x, double y) { return x * y; });
    return r;
  }
  void release_saved() override {
    on_release();
    a_ = b_ = Tensor();
  }

 private:
  Tensor a_, b_;
};

// {a, b} -> a + b (backward hands the same gradient tensor to both inputs: the tape must not alias it)
class AddNode final : public CountingNode {
 public:
  using CountingNode::CountingNode;
  const char* name() const override { return "test.add"; }
  std::vector<Tensor> forward(const std::vector<Tensor>& in, bool save) override {
    on_forward(save);
    return {map2(in[0], in[1], [](double x, double y) { return x + y; })};
  }
  std::vector<Tensor> backward(const std::vector<Tensor>& g, const std::vector<bool>& needs) override {
    on_backward();
    return {needs[0] ? g[0] : Tensor(), needs[1] ? g[0] : Tensor()};
  }
  void release_saved() override { on_release(); }
};

// {x} -> tanh(x), saving the output
class TanhNode final : public CountingNode {
 public:
  using CountingNode::CountingNode;
  const char* name() const override { return "test.tanh"; }
  std::vector<Tensor> forward(const std::vector<Tensor>& in, bool save) override {
    on_forward(save);
    Tensor y = map1(in[0], [](double x) { return std::tanh(x); });
    if (save) y_ = y;
    return {y};
  }
  std::vector<Tensor> backward(const std::vector<Tensor>& g, const std::vector<bool>& needs) override {
    on_backward();
    if (!needs[0]) return {Tensor()};
    return {map2(g[0], y_, [](double gy, double y) { return gy * (1.0 - y * y); })};
  }
  void release_saved() override {
    on_release();
    y_ = Tensor();
  }

 private:
  Tensor y_;
};

// {x} -> x unchanged (returns its input tensor itself: the tape must give the output its own identity)
class IdentityNode final : public CountingNode {
 public:
  using CountingNode::CountingNode;
  const char* name() const override { return "test.identity"; }
  std::vector<Tensor> forward(const std::vector<Tensor>& in, bool save) override {
    on_forward(save);
    return {in[0]};
  }
  std::vector<Tensor> backward(const std::vector<Tensor>& g, const std::vector<bool>& needs) override {
    on_backward();
    return {needs[0] ? g[0] : Tensor()};
  }
  void release_saved() override { on_release(); }
};

// {x} -> () sum of x
class SumNode final : public CountingNode {
 public:
  using CountingNode::CountingNode;
  const char* name() const override { return "test.sum"; }
  std::vector<Tensor> forward(const std::vector<Tensor>& in, bool save) override {
    on_forward(save);
    if (save) shape_ = in[0].shape();
    Tensor xc = f64(in[0]);
    double s = 0;
    for (int64_t i = 0; i < xc.numel(); ++i) s += xc.data<double>()[i];
    return {Tensor::full(Dims{}, ENG_F64, in[0].device(), s)};
  }
  std::vector<Tensor> backward(const std::vector<Tensor>& g, const std::vector<bool>& needs) override {
    on_backward();
    if (!needs[0]) return {Tensor()};
    return {Tensor::full(shape_, ENG_F64, g[0].device(), g[0].item())};
  }
  void release_saved() override { on_release(); }

 private:
  Dims shape_;
};

}  // namespace engine::rt::testing
