// The collectives of tensor parallelism as autograd ops (Megatron-LM's f and g), which the linear seam inserts
// where a parameter's placement is a split (ParamStore::set_split, the tp strategy):
//   tp_copy(x)    forward: x as it is (every rank holds the same x);  backward: the gradient summed over ranks
//                 (the input of a column-split projection: each rank's gradient covers its output slice only)
//   tp_reduce(y)  forward: y summed over ranks;  backward: the gradient as it is
//                 (the output of a row-split projection: each rank's product covers its input slice only)
// Both are collectives: every rank records them in the same order, and a checkpointed block's replay repeats
// tp_reduce on every rank. The group is the session's model communicator (every rank of the job, or the
// ranks of one data-parallel group in a tensor x data parallel mesh).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/host/host_session.hpp"

namespace engine::host {

rt::Tensor tp_copy(HostSession& session, bool grad_enabled, const rt::Tensor& x);
rt::Tensor tp_reduce(HostSession& session, bool grad_enabled, const rt::Tensor& y);

// Whether p's storage is a split that the ops see (applied and not gathered), and its dim (-1: none).
int split_dim(const rt::Param& p);

// Vocabulary-parallel embedding: table is split along its rows (this rank holds rows [r*n, (r+1)*n)); each
// rank looks up the ids it holds (zeros for the others) and tp_reduce sums the rows over the ranks. The ids
// are read on the host (a small copy of B*T int32 per forward).
rt::Tensor tp_embedding(HostSession& session, bool grad_enabled, rt::Param& table, const rt::Tensor& ids);

// Vocabulary-parallel fused linear + cross-entropy: weight (V, C) split along its rows; hidden (N, C) whole
// on every rank; labels on the host (ignore_index or in [0, V)). The loss () is scale * sum over labelled
// rows of (log-sum-exp over the whole vocabulary - the label's logit), the same on every rank; the (N, V)
// logits never exist (each rank forms its (N, V/world) part in chunks): the ranks exchange per-row
// log-sum-exps (an all-gather of N values) and the label logits' sum (an all-reduce of one).
rt::Tensor tp_linear_cross_entropy(HostSession& session, bool grad_enabled, const rt::Tensor& hidden,
                                   rt::Param& weight, const std::vector<int32_t>& labels, int64_t ignore_index,
                                   double scale);

}  // namespace engine::host
