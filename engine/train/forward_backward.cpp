#include "engine/train/forward_backward.hpp"

#include "engine/runtime/op_profile.hpp"

#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"
#include "engine/host/tensor_handle.hpp"
#include "engine/host/tensor_parallel.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "engine/runtime/kernel_table.hpp"

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

// batch (B,T) -> the scaled loss () f32, recorded when grad is on.
rt::Tensor batch_loss(session::TrainingSession& session, const data::Batch& b, double scale, bool grad) {
  host::HostSession& hs = session.host();
  rt::Device& dev = hs.device();
  if (dev.type() != rt::DeviceType::CPU) check_ids(b, session.model().info().vocab_size);
  const rt::Dims bt{b.rows, b.seq_len};
  rt::Tensor ids = rt::Tensor::from_vector(bt, ENG_I32, dev, b.input_ids);
  rt::Tensor pos = rt::Tensor::from_vector(bt, ENG_I32, dev, b.position_ids);
  rt::Tensor seg;
  if (session.recipe().data.packing && !single_sample_rows(b))
    seg = rt::Tensor::from_vector(bt, ENG_I32, dev, b.segment_ids);
  rt::Tensor labels = rt::Tensor::from_vector(rt::Dims{int64_t(b.rows) * b.seq_len}, ENG_I32, dev, b.labels);

  hs.set_host_ids(ids, &b.input_ids);  // tensor parallelism's embedding reads them on the host
  rt::Tensor hidden;
  try {
    hidden = session.model().forward(ids, pos, seg, nullptr, grad);  // (B,T,C)
  } catch (...) {
    hs.set_host_ids(ids, nullptr);
    throw;
  }
  hs.set_host_ids(ids, nullptr);
  rt::Param& head = session.model().lm_head();
  if (host::split_dim(head) == 0) {
    // Tensor parallelism: the vocabulary-parallel loss, with the labels as the host has them (no copy back).
    const int64_t shape[2] = {int64_t(b.rows) * b.seq_len, session.model().info().hidden_size};
    const rt::Tensor flat = hs.apply1(grad, rt::ops::make_reshape(2, shape), {hidden});
    return host::tp_linear_cross_entropy(hs, grad, flat, head, b.labels, data::kIgnoreIndex, scale);
  }
  eng_ctx ctx = hs.context(grad);
  const eng_op_table* ops = host::host_api()->ops;
  OwnedHandle h(hidden), lab(labels), flat, loss;
  const int64_t shape[2] = {int64_t(b.rows) * b.seq_len, session.model().info().hidden_size};
  check(ops->reshape(&ctx, h.get(), 2, shape, flat.out()), hs, ctx,
        "reshape of the hidden states");  // (B*T, C)
  check(ops->linear_cross_entropy(&ctx, flat.get(), host::param_handle(session.model().lm_head()), lab.get(),
                                  data::kIgnoreIndex, scale, loss.out()),
        hs, ctx, "the loss");
  return host::tensor_of(loss.get(), "loss");
}

}  // namespace

bool single_sample_rows(const data::Batch& b) {
  for (int64_t r = 0; r < b.rows; ++r) {
    const int32_t* s = b.segment_ids.data() + r * b.seq_len;
    int64_t t = 0;
    while (t < b.seq_len && s[t] == 1) ++t;
    while (t < b.seq_len && s[t] == 0) ++t;
    if (t != b.seq_len) return false;
  }
  return true;
}

namespace {

// Sums host values over the data-parallel groups (a CPU tensor through the communicator; exact for counts below
// 2^53). The ranks of one group (tensor parallelism) hold the same values: the sum over all ranks counts each
// group model_parallel_size() times.
void sum_over_ranks(session::TrainingSession& session, std::span<double> values) {
  if (session.world_size() == 1) return;
  rt::Tensor t = rt::Tensor::from_vector(rt::Dims{static_cast<int64_t>(values.size())}, ENG_F64, rt::cpu_device(),
                                         std::vector<double>(values.begin(), values.end()));
  session.host().communicator().all_reduce_sum(t);
  t.copy_to_host(values.data(), values.size() * sizeof(double));
  if (const int k = session.model_parallel_size(); k > 1)
    for (double& v : values) v /= k;
}

}  // namespace

PassResult forward_backward(session::TrainingSession& session, std::span<const data::Batch> micro_batches) {
  PassResult r;
  for (const data::Batch& b : micro_batches) {
    r.label_tokens += b.label_tokens;
    for (int32_t s : b.segment_ids) r.input_tokens += s != 0;
  }
  double counts[2] = {static_cast<double>(r.label_tokens), static_cast<double>(r.input_tokens)};
  sum_over_ranks(session, counts);
  r.label_tokens = static_cast<int64_t>(counts[0]);
  r.input_tokens = static_cast<int64_t>(counts[1]);
  if (r.label_tokens == 0)
    fail("an optimizer step got no label tokens (every sample's response was cut off?)");
  const double scale = 1.0 / static_cast<double>(r.label_tokens);
  // The micro-batch losses add up on the device (in f64); the step's loss is read once, after the last
  // backward.
  rt::Tensor loss_sum;
  for (const data::Batch& b : micro_batches) {
    rt::Tensor loss;
    {
      rt::HostTimer timer("forward", "host");
      loss = batch_loss(session, b, scale, true);
    }
    if (!loss_sum.defined()) {
      loss_sum = rt::Tensor::empty(rt::Dims{}, ENG_F64, loss.device());
      loss.device().kernels().fill(loss_sum, 0.0);
    }
    loss.device().kernels().axpby(loss_sum, 1.0, loss.detached(), 1.0);
    rt::HostTimer timer("backward", "host");
    session.host().tape().backward(loss);
  }
  double loss = 0;
  {
    rt::HostTimer timer("loss read", "waits for the device");
    loss = loss_sum.item();
  }
  sum_over_ranks(session, std::span<double>(&loss, 1));
  r.loss = loss;
  return r;
}

PassResult evaluate_loss(session::TrainingSession& session, std::span<const data::Batch> batches) {
  PassResult r;
  rt::NoGradGuard no_grad(session.host().tape());
  for (const data::Batch& b : batches) {
    r.label_tokens += b.label_tokens;
    for (int32_t s : b.segment_ids) r.input_tokens += s != 0;
    r.loss += batch_loss(session, b, 1.0, false).item();  // evaluation: not in the step loop
  }
  return r;
}

}  // namespace engine::train
