// ProcessGroup: the communicator of a distributed run (rt::Communicator), built from a DistEnv.
//
//   rendezvous: rank 0 hosts a TcpStoreServer at MASTER_PORT; every rank connects a TcpStoreClient to
//               MASTER_ADDR:MASTER_PORT. The store only carries Gloo's addresses, the NCCL unique id and
//               heartbeats.
//   CPU tensors: Gloo (TCP transport, full mesh), run by one worker thread in the order the collectives
//               were started, so the *_async forms return at once and wait() joins.
//   CUDA tensors: NCCL (when the run's device is CUDA; nccl_backend.hpp), on a communication stream ordered
//               after the compute stream; wait() orders the compute stream after the collective.
//   timeouts:  every collective must finish within `timeout` (parallel.timeout_s). Each rank's heartbeat
//               thread writes "hb/<rank>" = "<collective number> <step> <operation>" to the store twice a
//               second; a rank whose collective times out reads the others' heartbeats and names the rank
//               that is not answering (stale heartbeat) or is behind (an earlier collective), with the
//               operation and the step, then the run ends on that rank with that message (engine::Error);
//               the others fail at once when its connections close, and the launcher stops the rest.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "engine/dist/dist_env.hpp"
#include "engine/dist/tcp_store.hpp"
#include "engine/runtime/communicator.hpp"
#include "engine/runtime/device.hpp"

namespace gloo {
class Context;
}

namespace engine::dist {

class NcclBackend;

struct ProcessGroupOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(600)};
  // How long ranks wait for each other at start-up (the slowest rank may still be loading).
  std::chrono::milliseconds rendezvous_timeout{std::chrono::seconds(600)};
};

class ProcessGroup final : public rt::Communicator {
 public:
  using Tensor = rt::Tensor;
  // Rendezvous with the other ranks of `env` (blocks until all have joined); `device` decides whether an
  // NCCL communicator is created too (CUDA).
  ProcessGroup(const DistEnv& env, rt::Device& device, ProcessGroupOptions options);
  ~ProcessGroup() override;
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }
  void all_reduce_sum(Tensor& t) override { all_reduce_sum_async(t)->wait(); }
  void broadcast(Tensor& t, int root) override { broadcast_async(t, root)->wait(); }
  void all_gather(const Tensor& shard, Tensor& full) override { all_gather_async(shard, full)->wait(); }
  void reduce_scatter_sum(const Tensor& full, Tensor& shard) override {
    reduce_scatter_sum_async(full, shard)->wait();
  }
  void barrier() override;
  std::unique_ptr<rt::CommWork> all_reduce_sum_async(Tensor& t) override;
  std::unique_ptr<rt::CommWork> all_gather_async(const Tensor& shard, Tensor& full) override;
  std::unique_ptr<rt::CommWork> reduce_scatter_sum_async(const Tensor& full, Tensor& shard) override;
  std::unique_ptr<rt::CommWork> broadcast_async(Tensor& t, int root) override;
  void set_step(int64_t step) override;

  const DistEnv& env() const { return env_; }
  // A subgroup: every rank of the job calls subgroup(name, color) once, in the same order; the ranks that pass
  // the same color form one group (ordered by their rank). Its collectives run on this group's worker thread
  // (CPU, Gloo: a mesh of its own) or on an NCCL communicator of its own (CUDA), with the same timeouts. This
  // ProcessGroup must outlive it. Used for tensor x data parallel meshes.
  std::unique_ptr<rt::Communicator> subgroup(const std::string& name, int color) override;
  // The message of a collective that failed or timed out: the operation, the step, and what the other
  // ranks' heartbeats say (which rank is missing). Used by the NCCL watchdog too.
  std::string describe_failure(const std::string& op, uint64_t seq, const std::string& cause);

 private:
  friend class SubGroup;
  // The communicators one set of ranks shares: the world, or a subgroup.
  struct Comms {
    std::shared_ptr<gloo::Context> gloo;
    std::shared_ptr<NcclBackend> nccl;
    int rank = 0;
    int size = 1;
    uint32_t tag = 0;  // Gloo tags, one per collective of these ranks (the order they are started)
    std::string label;  // "" for the world, else the subgroup's name and color (in messages)
  };
  std::unique_ptr<rt::CommWork> all_reduce_sum_on(Comms& c, Tensor& t);
  std::unique_ptr<rt::CommWork> all_gather_on(Comms& c, const Tensor& shard, Tensor& full);
  std::unique_ptr<rt::CommWork> reduce_scatter_sum_on(Comms& c, const Tensor& full, Tensor& shard);
  std::unique_ptr<rt::CommWork> broadcast_on(Comms& c, Tensor& t, int root);
  void barrier_on(Comms& c);
  struct Begun {
    uint64_t seq;
    int64_t step;
  };
  Begun begin(const char* op);
  void end(uint64_t seq);
  // Queues a Gloo collective on the worker thread.
  std::unique_ptr<rt::CommWork> enqueue(const char* op, Comms& c, std::function<void(uint32_t tag)> fn);
  void worker_loop();
  void heartbeat_loop();

  DistEnv env_;
  ProcessGroupOptions options_;
  std::unique_ptr<TcpStoreServer> server_;  // rank 0 only
  std::unique_ptr<TcpStoreClient> store_;
  std::unique_ptr<TcpStoreClient> heartbeat_store_;
  Comms world_;  // gloo, nccl (shared_ptr: a CPU-only build never names NcclBackend's destructor)
  rt::Device* device_ = nullptr;

  std::mutex state_mu_;
  uint64_t seq_ = 0;         // collectives started
  uint64_t current_ = 0;     // the collective in progress (0: none)
  std::string current_op_;   // its name
  int64_t step_ = 0;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stopping_ = false;
  std::thread worker_;

  std::mutex hb_mu_;
  std::condition_variable hb_cv_;
  bool hb_stop_ = false;
  std::thread heartbeat_;
};

}  // namespace engine::dist
