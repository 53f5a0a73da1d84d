// Communicator: the collectives of a run, as the host table's all_reduce_sum/broadcast/all_gather/
// reduce_scatter_sum/barrier reach them. engine/dist provides NCCL (CUDA tensors) and Gloo (CPU tensors)
// implementations for world_size > 1; LocalCommunicator is the single-process one. All operate in place.
#pragma once

#include <memory>
#include <string>

#include "engine/runtime/tensor.hpp"

namespace engine::rt {

// A collective in flight. wait() returns once its result may be used by the caller's next work: on the CPU
// when the buffers hold the result, on CUDA when the compute stream is ordered after it (the host does not
// block). wait() rethrows the collective's failure (a timeout names the operation and the missing rank).
class CommWork {
 public:
  virtual ~CommWork() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  // Asynchronous forms (the tensors must stay alive and untouched until wait()). Collectives of one
  // communicator run in the order they were started. The defaults run the collective at once.
  virtual std::unique_ptr<CommWork> all_reduce_sum_async(Tensor& t);
  virtual std::unique_ptr<CommWork> all_gather_async(const Tensor& shard, Tensor& full);
  virtual std::unique_ptr<CommWork> reduce_scatter_sum_async(const Tensor& full, Tensor& shard);
  virtual std::unique_ptr<CommWork> broadcast_async(Tensor& t, int root);
  // What the run is doing (the optimizer step), named by a timeout's message.
  virtual void set_step(int64_t step) { (void)step; }
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // t = sum over ranks of t
  virtual void all_reduce_sum(Tensor& t) = 0;
  // t = t on rank `root`
  virtual void broadcast(Tensor& t, int root) = 0;
  // full = concatenation of every rank's shard (flattened, rank order); full.numel() == world * shard.numel()
  virtual void all_gather(const Tensor& shard, Tensor& full) = 0;
  // shard = this rank's slice of the sum over ranks of full (flattened, rank order)
  virtual void reduce_scatter_sum(const Tensor& full, Tensor& shard) = 0;
  virtual void barrier() = 0;
  // A subgroup (every rank calls it once with the same name, in the same order; ranks passing the same color
  // form one group, in rank order). The default refuses; LocalCommunicator gives another local one.
  virtual std::unique_ptr<Communicator> subgroup(const std::string& name, int color);
};

// world_size 1: reductions and broadcasts are the identity, gathers and scatters are copies.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(Tensor& t) override;
  void broadcast(Tensor& t, int root) override;
  void all_gather(const Tensor& shard, Tensor& full) override;
  void reduce_scatter_sum(const Tensor& full, Tensor& shard) override;
  void barrier() override {}
  std::unique_ptr<Communicator> subgroup(const std::string& name, int color) override;
};

}  // namespace engine::rt
