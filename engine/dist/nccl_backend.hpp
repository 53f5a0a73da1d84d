// NcclBackend: the CUDA-tensor collectives of a ProcessGroup (built only with the CUDA backend).
//
// Ordering: each collective runs on a communication stream of its own. Before it, that stream waits for an
// event recorded on the device's compute stream (so the collective sees every kernel that wrote its buffers);
// after it, an event is recorded, and CommWork::wait() makes the compute stream wait for that event (the
// host does not block). The work keeps its tensors alive until then, so the stream-ordered caching allocator
// cannot hand their memory to a later kernel while NCCL still reads or writes it.
//
// Timeouts: a watchdog thread polls every collective in flight; one that has not finished within
// parallel.timeout_s is reported with the ProcessGroup's diagnosis (operation, step, the rank that is
// missing), the communicator is aborted and the process exits with status 1 (the compute stream may be
// blocked behind the collective, so no exception could reach the step loop). NCCL's asynchronous errors are
// reported the same way.
#pragma once

#include <chrono>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/dist/dist_env.hpp"
#include "engine/dist/tcp_store.hpp"
#include "engine/runtime/communicator.hpp"
#include "engine/runtime/device.hpp"

struct ncclComm;
struct CUstream_st;
struct CUevent_st;

namespace engine::dist {

class ProcessGroup;

class NcclBackend {
 public:
  // Rank 0 of the `size` ranks creates the unique id and publishes it through the store under `id_key`
  // ("nccl/id" for the world, one key per subgroup); every rank then joins as `rank`.
  NcclBackend(ProcessGroup& group, TcpStoreClient& store, const std::string& id_key, int rank, int size,
              rt::Device& device, std::chrono::milliseconds timeout);
  ~NcclBackend();
  NcclBackend(const NcclBackend&) = delete;
  NcclBackend& operator=(const NcclBackend&) = delete;

  std::unique_ptr<rt::CommWork> all_reduce_sum(rt::Tensor& t);
  std::unique_ptr<rt::CommWork> broadcast(rt::Tensor& t, int root);
  std::unique_ptr<rt::CommWork> all_gather(const rt::Tensor& shard, rt::Tensor& full);
  std::unique_ptr<rt::CommWork> reduce_scatter_sum(const rt::Tensor& full, rt::Tensor& shard);
  // Blocks the host until every collective started so far has finished (before a Gloo barrier).
  void synchronize();

  struct Pending {
    std::shared_ptr<CUevent_st> done;  // shared with the CommWork
    std::string op;
    uint64_t seq = 0;
    std::chrono::steady_clock::time_point started;
  };

 private:
  // Orders the comm stream after the compute stream, runs `launch` on it, records the done event.
  template <typename Launch>
  std::unique_ptr<rt::CommWork> run(const char* op, std::vector<rt::Tensor> keep, Launch&& launch);
  void watchdog_loop();

  ProcessGroup* group_;
  rt::Device* device_;
  std::chrono::milliseconds timeout_;
  ncclComm* comm_ = nullptr;
  CUstream_st* compute_ = nullptr;
  CUstream_st* comm_stream_ = nullptr;
  CUevent_st* ready_ = nullptr;
  uint64_t seq_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::list<Pending> pending_;
  bool stop_ = false;
  std::thread watchdog_;
};

}  // namespace engine::dist
