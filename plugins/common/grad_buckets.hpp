// sum_grads_over_ranks: the gradient all-reduce that ddp, zero2 and tp share. Trainable, untied gradients are
// packed in declaration order into buckets of at most `bucket_bytes` (one dtype per bucket); each bucket is
// all-reduced as one flat tensor (a single gradient in place) and unpacked. Built against the SDK only.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/cpp/host.hpp"
#include "engine/cpp/param.hpp"

namespace engine::plugins_common {

// group: ENG_GROUP_WORLD (ddp, zero2), or a group of a tensor x data parallel mesh (tp).
inline void sum_bucket(const sdk::Host& host, const std::vector<sdk::Tensor>& grads, int32_t group = ENG_GROUP_WORLD) {
  if (grads.size() == 1) {
    host.all_reduce_sum(grads[0], group);
    return;
  }
  std::vector<sdk::Tensor> flat;
  flat.reserve(grads.size());
  for (const sdk::Tensor& g : grads) flat.push_back(host.reshape(g, {g.numel()}));
  sdk::Tensor packed = host.concat(flat, 0);
  host.all_reduce_sum(packed, group);
  int64_t offset = 0;
  for (const sdk::Tensor& g : grads) {
    const int64_t n = g.numel();
    host.copy_(g, host.reshape(host.slice(packed, 0, offset, offset + n), g.shape()));
    offset += n;
  }
}

// keep: which trainable parameters take part (all of them by default; tp: the partial-gradient ones).
template <typename Keep = bool (*)(const sdk::ParamInfo&)>
inline void sum_grads_over_ranks(const sdk::Host& host, int64_t bucket_bytes,
                                 Keep keep = [](const sdk::ParamInfo&) { return true; },
                                 int32_t group = ENG_GROUP_WORLD) {
  std::vector<sdk::Tensor> bucket;
  int64_t bytes = 0;
  eng_dtype dtype = ENG_F32;
  for (sdk::Param p : host.params()) {
    const sdk::ParamInfo info = host.info(p);
    if (!info.trainable() || (info.flags & ENG_PARAM_TIED) != 0 || !keep(info)) continue;
    sdk::Tensor g = host.grad(p);
    if (!g) continue;
    const int64_t nbytes = g.numel() * static_cast<int64_t>(sdk::dtype_size(g.dtype()));
    if (!bucket.empty() && (g.dtype() != dtype || bytes + nbytes > bucket_bytes)) {
      sum_bucket(host, bucket, group);
      bucket.clear();
      bytes = 0;
    }
    dtype = g.dtype();
    bucket.push_back(std::move(g));
    bytes += nbytes;
  }
  if (!bucket.empty()) sum_bucket(host, bucket, group);
}

}  // namespace engine::plugins_common
