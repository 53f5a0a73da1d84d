#include "engine/train/batch_loss.hpp"

#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"
#include "engine/host/tensor_handle.hpp"
#include "engine/host/tensor_parallel.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "engine/runtime/ops/to_device.hpp"
#include "engine/train/forward_backward.hpp"

namespace engine::train {
namespace {

using host::OwnedHandle;

void check(eng_status s, host::HostSession& hs, const eng_ctx& ctx, const char* what) {
  if (s == ENG_OK) return;
  std::string m = host::host_api()->get_error(&ctx);
  hs.clear_error();
  throw Error(fmt::format("{} failed: {}", what, m.empty() ? status_name(s) : m), s);
}

// Token ids and labels outside the vocabulary, checked on the host before they go to an accelerator (whose
// kernels do not read them back; the CPU ops check them themselves).
void check_ids(const data::Batch& b, int64_t vocab) {
  for (size_t i = 0; i < b.input_ids.size(); ++i)
    if (b.input_ids[i] < 0 || b.input_ids[i] >= vocab)
      fail("token id {} at position {} of a batch is outside the model's vocabulary of {} (tokenizer and model "
           "disagree?)",
           b.input_ids[i], i, vocab);
  for (size_t i = 0; i < b.labels.size(); ++i)
    if (b.labels[i] != data::kIgnoreIndex && (b.labels[i] < 0 || b.labels[i] >= vocab))
      fail("label {} at position {} of a batch is outside the model's vocabulary of {}", b.labels[i], i, vocab);
}

}  // namespace

BatchTensors batch_tensors(session::TrainingSession& session, const data::Batch& b) {
  rt::Device& dev = session.host().device();
  if (dev.type() != rt::DeviceType::CPU) check_ids(b, session.model().info().vocab_size);
  const rt::Dims bt{b.rows, b.seq_len};
  BatchTensors t;
  t.ids = rt::Tensor::from_vector(bt, ENG_I32, dev, b.input_ids);
  t.pos = rt::Tensor::from_vector(bt, ENG_I32, dev, b.position_ids);
  if (session.recipe().data.packing && !single_sample_rows(b))
    t.seg = rt::Tensor::from_vector(bt, ENG_I32, dev, b.segment_ids);
  return t;
}

rt::Tensor head_loss(session::TrainingSession& session, const data::Batch& b, const rt::Tensor& hidden, double scale,
                     bool grad) {
  host::HostSession& hs = session.host();
  const int64_t shape[2] = {int64_t(b.rows) * b.seq_len, session.model().info().hidden_size};
  rt::Param& head = session.model().lm_head();
  if (host::split_dim(head) == 0) {
    // Tensor parallelism: the vocabulary-parallel loss, with the labels as the host has them (no copy back).
    const rt::Tensor flat = hs.apply1(grad, rt::ops::make_reshape(2, shape), {hidden});
    return host::tp_linear_cross_entropy(hs, grad, flat, head, b.labels, data::kIgnoreIndex, scale);
  }
  const rt::Tensor labels =
      rt::Tensor::from_vector(rt::Dims{int64_t(b.rows) * b.seq_len}, ENG_I32, hs.device(), b.labels);
  eng_ctx ctx = hs.context(grad);
  const eng_op_table* ops = host::host_api()->ops;
  OwnedHandle h(hidden), lab(labels), flat, loss;
  check(ops->reshape(&ctx, h.get(), 2, shape, flat.out()), hs, ctx, "reshape of the hidden states");  // (B*T, C)
  check(ops->linear_cross_entropy(&ctx, flat.get(), host::param_handle(head), lab.get(), data::kIgnoreIndex, scale,
                                  loss.out()),
        hs, ctx, "the loss");
  return host::tensor_of(loss.get(), "loss");
}

namespace {

// `x` on `d`, recorded (its gradient goes back to x's device) when grad is on.
rt::Tensor moved(host::HostSession& hs, bool grad, const rt::Tensor& x, rt::Device& d) {
  if (&x.device() == &d) return x;
  return hs.apply1(grad, rt::ops::make_to_device(d), {x});
}

// Layer placement: each device runs its blocks from the previous device's hidden states, the loss is computed
// where the lm_head lives. The tensors the model creates go to the device of its blocks (DeviceScope).
rt::Tensor layered_loss(session::TrainingSession& session, const session::TrainingSession::Layers& layers,
                        const data::Batch& b, const BatchTensors& t, double scale, bool grad) {
  host::HostSession& hs = session.host();
  rt::Tensor hidden;
  for (const auto& seg : layers.segments) {
    host::DeviceScope scope(hs, seg.device);
    auto here = [&](const rt::Tensor& x) { return x.defined() ? x.to_device(*seg.device) : x; };
    const rt::Tensor input = seg.first == 0 ? rt::Tensor() : moved(hs, grad, hidden, *seg.device);
    hidden = session.model().forward_blocks(here(t.ids), here(t.pos), here(t.seg), input, seg.first, seg.last, grad);
  }
  host::DeviceScope scope(hs, layers.head);
  return head_loss(session, b, moved(hs, grad, hidden, *layers.head), scale, grad);
}

}  // namespace

rt::Tensor batch_loss(session::TrainingSession& session, const data::Batch& b, double scale, bool grad) {
  host::HostSession& hs = session.host();
  const BatchTensors t = batch_tensors(session, b);
  if (const session::TrainingSession::Layers* layers = session.layers())
    return layered_loss(session, *layers, b, t, scale, grad);
  hs.set_host_ids(t.ids, &b.input_ids);  // tensor parallelism's embedding reads them on the host
  rt::Tensor hidden;
  try {
    hidden = session.model().forward(t.ids, t.pos, t.seg, nullptr, grad);  // (B,T,C)
  } catch (...) {
    hs.set_host_ids(t.ids, nullptr);
    throw;
  }
  hs.set_host_ids(t.ids, nullptr);
  return head_loss(session, b, hidden, scale, grad);
}

}  // namespace engine::train
