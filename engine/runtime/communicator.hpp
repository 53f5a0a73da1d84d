// Communicator: the collectives of a run, as the host table's all_reduce_sum/broadcast/all_gather/
// reduce_scatter_sum/barrier reach them. engine/dist provides NCCL (CUDA tensors) and Gloo (CPU tensors)
// implementations for world_size > 1; LocalCommunicator is the single-process one. All operate in place.
#pragma once

#include "engine/runtime/tensor.hpp"

namespace engine::rt {

class Communicator {
 public:
  virtual ~Communicator() = default;
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
};

}  // namespace engine::rt
