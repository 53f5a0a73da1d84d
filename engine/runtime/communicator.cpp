#include "engine/runtime/communicator.hpp"

#include "engine/core/error.hpp"

namespace engine::rt {

namespace {

void check_defined(const Tensor& t, const char* op) {
  if (!t.defined()) fail("{}: the tensor is undefined", op);
}

// dst (any shape) = src (any shape) element for element when both have the same count and dtype.
void copy_flat(const Tensor& src, Tensor& dst, const char* op) {
  if (src.numel() != dst.numel())
    fail("{} with world_size 1: the shard {} and the full tensor {} must have the same number of elements",
         op, src.describe(), dst.describe());
  if (src.dtype() != dst.dtype()) fail("{}: dtypes differ ({} vs {})", op, src.describe(), dst.describe());
  if (src.raw_data() == dst.raw_data()) return;
  if (!dst.is_contiguous()) fail("{}: the destination {} must be contiguous", op, dst.describe());
  dst.copy_from(src.contiguous().view(dst.shape()));
}

struct DoneWork final : CommWork {
  void wait() override {}
};

}  // namespace

std::unique_ptr<CommWork> Communicator::all_reduce_sum_async(Tensor& t) {
  all_reduce_sum(t);
  return std::make_unique<DoneWork>();
}
std::unique_ptr<CommWork> Communicator::all_gather_async(const Tensor& shard, Tensor& full) {
  all_gather(shard, full);
  return std::make_unique<DoneWork>();
}
std::unique_ptr<CommWork> Communicator::reduce_scatter_sum_async(const Tensor& full, Tensor& shard) {
  reduce_scatter_sum(full, shard);
  return std::make_unique<DoneWork>();
}
std::unique_ptr<CommWork> Communicator::broadcast_async(Tensor& t, int root) {
  broadcast(t, root);
  return std::make_unique<DoneWork>();
}

void LocalCommunicator::all_reduce_sum(Tensor& t) { check_defined(t, "all_reduce_sum"); }

void LocalCommunicator::broadcast(Tensor& t, int root) {
  check_defined(t, "broadcast");
  if (root != 0) fail("broadcast from rank {} in a job of world_size 1 (ranks are 0..0)", root);
}

void LocalCommunicator::all_gather(const Tensor& shard, Tensor& full) {
  check_defined(shard, "all_gather");
  check_defined(full, "all_gather");
  copy_flat(shard, full, "all_gather");
}

void LocalCommunicator::reduce_scatter_sum(const Tensor& full, Tensor& shard) {
  check_defined(full, "reduce_scatter_sum");
  check_defined(shard, "reduce_scatter_sum");
  copy_flat(full, shard, "reduce_scatter_sum");
}

}  // namespace engine::rt

namespace engine::rt {

std::unique_ptr<Communicator> Communicator::subgroup(const std::string& name, int color) {
  fail("this communicator cannot form subgroups (asked for {} {}): a tensor x data parallel mesh needs the "
       "process group of a launched job",
       name, color);
}

std::unique_ptr<Communicator> LocalCommunicator::subgroup(const std::string&, int) {
  return std::make_unique<LocalCommunicator>();
}

}  // namespace engine::rt
