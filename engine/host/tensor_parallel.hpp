// The collectives of tensor parallelism as autograd ops (Megatron-LM's f and g), which the linear seam inserts
// where a parameter's placement is a split (ParamStore::set_split, the tp strategy):
//   tp_copy(x)    forward: x as it is (every rank holds the same x);  backward: the gradient summed over ranks
//                 (the input of a column-split projection: each rank's gradient covers its output slice only)
//   tp_reduce(y)  forward: y summed over ranks;  backward: the gradient as it is
//                 (the output of a row-split projection: each rank's product covers its input slice only)
// Both are collectives: every rank records them in the same order, and a checkpointed block's replay repeats
// tp_reduce on every rank. The group is the session's communicator (every rank of the job).
#pragma once

#include "engine/host/host_session.hpp"

namespace engine::host {

rt::Tensor tp_copy(HostSession& session, bool grad_enabled, const rt::Tensor& x);
rt::Tensor tp_reduce(HostSession& session, bool grad_enabled, const rt::Tensor& y);

}  // namespace engine::host
