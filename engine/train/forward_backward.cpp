#include "engine/train/forward_backward.hpp"

#include "engine/core/error.hpp"
#include "engine/runtime/kernel_table.hpp"
#include "engine/runtime/op_profile.hpp"
#include "engine/train/batch_loss.hpp"
#include "engine/train/pipeline_pass.hpp"

namespace engine::train {

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
// once_per_group false: the values are the model group's parts (a pipeline's loss, on its last stage alone),
// summed over every rank as they are.
void sum_over_ranks(session::TrainingSession& session, std::span<double> values, bool once_per_group = true) {
  if (session.world_size() == 1) return;
  rt::Tensor t = rt::Tensor::from_vector(rt::Dims{static_cast<int64_t>(values.size())}, ENG_F64, rt::cpu_device(),
                                         std::vector<double>(values.begin(), values.end()));
  session.host().communicator().all_reduce_sum(t);
  t.copy_to_host(values.data(), values.size() * sizeof(double));
  if (const int k = session.model_parallel_size(); k > 1 && once_per_group)
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
  if (session.pipeline() != nullptr) {
    // Pipeline parallelism: the stages run the micro-batches in their schedule; the last one has the loss.
    double loss = pipeline_forward_backward(session, micro_batches, scale);
    sum_over_ranks(session, std::span<double>(&loss, 1), /*once_per_group=*/false);
    r.loss = loss;
    return r;
  }
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
  }
  if (session.pipeline() != nullptr) {
    // Every stage takes part; the last one's loss is summed over the pipeline (the others add zero).
    double loss = pipeline_evaluate(session, batches);
    rt::Tensor t = rt::Tensor::from_vector(rt::Dims{1}, ENG_F64, rt::cpu_device(), std::vector<double>{loss});
    session.host().model_communicator().all_reduce_sum(t);
    t.copy_to_host(&loss, sizeof loss);
    r.loss = loss;
    return r;
  }
  for (const data::Batch& b : batches) r.loss += batch_loss(session, b, 1.0, false).item();  // not in the step loop
  return r;
}

}  // namespace engine::train
