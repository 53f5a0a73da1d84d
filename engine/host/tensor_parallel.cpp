#include "engine/host/tensor_parallel.hpp"

#include <memory>

#include "engine/core/error.hpp"
#include "engine/runtime/node.hpp"

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

}  // namespace

rt::Tensor tp_copy(HostSession& session, bool grad_enabled, const rt::Tensor& x) {
  return session.apply1(grad_enabled, std::make_unique<TpCopyNode>(session.communicator()), {x});
}

rt::Tensor tp_reduce(HostSession& session, bool grad_enabled, const rt::Tensor& y) {
  return session.apply1(grad_enabled, std::make_unique<TpReduceNode>(session.communicator()), {y});
}

}  // namespace engine::host
