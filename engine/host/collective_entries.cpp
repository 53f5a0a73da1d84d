// The host table's collectives, on the session's communicator (the local one until the session layer plugs
// in a real one).
#include "engine/core/error.hpp"
#include "engine/host/entry_args.hpp"
#include "engine/host/entry_guard.hpp"
#include "engine/host/host_entries.hpp"

namespace engine::host {

using rt::Tensor;

eng_status h_all_reduce_sum(const eng_ctx* ctx, eng_tensor t) {
  return guarded(ctx, "all_reduce_sum", [&] {
    Tensor x = tensor_of(t, "t");
    session_of(ctx).communicator().all_reduce_sum(x);
  });
}

eng_status h_group_all_reduce_sum(const eng_ctx* ctx, eng_tensor t, int32_t group) {
  return guarded(ctx, "group_all_reduce_sum", [&] {
    Tensor x = tensor_of(t, "t");
    HostSession& s = session_of(ctx);
    switch (group) {
      case ENG_GROUP_WORLD: return s.communicator().all_reduce_sum(x);
      case ENG_GROUP_MODEL: return s.model_communicator().all_reduce_sum(x);
      case ENG_GROUP_DATA: return s.data_communicator().all_reduce_sum(x);
      default:
        fail("group_all_reduce_sum: group {} is not ENG_GROUP_WORLD (0), ENG_GROUP_MODEL (1) or ENG_GROUP_DATA (2)",
             group);
    }
  });
}

eng_status h_broadcast(const eng_ctx* ctx, eng_tensor t, int32_t root) {
  return guarded(ctx, "broadcast", [&] {
    Tensor x = tensor_of(t, "t");
    session_of(ctx).communicator().broadcast(x, root);
  });
}

eng_status h_all_gather(const eng_ctx* ctx, eng_tensor shard, eng_tensor full) {
  return guarded(ctx, "all_gather", [&] {
    Tensor f = tensor_of(full, "full");
    session_of(ctx).communicator().all_gather(tensor_of(shard, "shard"), f);
  });
}

eng_status h_reduce_scatter_sum(const eng_ctx* ctx, eng_tensor full, eng_tensor shard) {
  return guarded(ctx, "reduce_scatter_sum", [&] {
    Tensor sh = tensor_of(shard, "shard");
    session_of(ctx).communicator().reduce_scatter_sum(tensor_of(full, "full"), sh);
  });
}

eng_status h_barrier(const eng_ctx* ctx) {
  return guarded(ctx, "barrier", [&] { session_of(ctx).communicator().barrier(); });
}

}  // namespace engine::host
