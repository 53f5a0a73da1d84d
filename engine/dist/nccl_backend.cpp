#include "engine/dist/nccl_backend.hpp"

#include <cuda_runtime.h>
#include <nccl.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>

#include "engine/core/error.hpp"
#include "engine/dist/process_group.hpp"

namespace engine::dist {

namespace {

#define ENGINE_NCCL_CHECK(call)                                                                         \
  do {                                                                                                  \
    const ncclResult_t r_ = (call);                                                                     \
    if (r_ != ncclSuccess)                                                                              \
      ::engine::fail("{}:{}: {} failed: {} ({})", __FILE__, __LINE__, #call, ncclGetErrorString(r_),     \
                     ncclGetLastError(nullptr));                                                        \
  } while (0)

#define ENGINE_CUDA_CHECK_DIST(call)                                                                    \
  do {                                                                                                  \
    const cudaError_t e_ = (call);                                                                      \
    if (e_ != cudaSuccess)                                                                              \
      ::engine::fail("{}:{}: {} failed: {}", __FILE__, __LINE__, #call, cudaGetErrorString(e_));         \
  } while (0)

ncclDataType_t nccl_type(const rt::Tensor& t, const char* op) {
  switch (t.dtype()) {
    case ENG_F32: return ncclFloat32;
    case ENG_F64: return ncclFloat64;
    case ENG_BF16: return ncclBfloat16;
    case ENG_F16: return ncclFloat16;
    case ENG_I32: return ncclInt32;
    case ENG_I64: return ncclInt64;
    default: fail("{}: {} tensors are not supported by the NCCL collectives", op, t.describe());
  }
}

void check_cuda_tensor(const rt::Tensor& t, const char* op) {
  if (!t.defined()) fail("{}: the tensor is undefined", op);
  if (t.device().type() != rt::DeviceType::CUDA) fail("{}: {} is not a CUDA tensor", op, t.describe());
  if (!t.is_contiguous()) fail("{}: the tensor {} must be contiguous", op, t.describe());
}

class NcclWork final : public rt::CommWork {
 public:
  NcclWork(std::shared_ptr<CUevent_st> done, CUstream_st* compute, std::vector<rt::Tensor> keep)
      : done_(std::move(done)), compute_(compute), keep_(std::move(keep)) {}
  ~NcclWork() override {
    if (done_) cudaStreamWaitEvent(compute_, done_.get(), 0);  // unwaited: still order later kernels after it
  }
  void wait() override {
    if (!done_) return;
    ENGINE_CUDA_CHECK_DIST(cudaStreamWaitEvent(compute_, done_.get(), 0));
    done_.reset();
    keep_.clear();  // their frees are now ordered after the collective on the compute stream
  }

 private:
  std::shared_ptr<CUevent_st> done_;
  CUstream_st* compute_;
  std::vector<rt::Tensor> keep_;
};

}  // namespace

NcclBackend::NcclBackend(ProcessGroup& group, TcpStoreClient& store, const std::string& id_key, int rank, int size,
                         rt::Device& device, std::chrono::milliseconds timeout)
    : group_(&group), device_(&device), timeout_(timeout) {
  compute_ = static_cast<CUstream_st*>(device.compute_stream());
  ENGINE_CUDA_CHECK_DIST(cudaSetDevice(device.index()));
  ncclUniqueId id;
  if (rank == 0) {
    ENGINE_NCCL_CHECK(ncclGetUniqueId(&id));
    store.set(id_key, std::string(reinterpret_cast<const char*>(&id), sizeof id));
  }
  const std::string got = store.get(id_key, std::chrono::milliseconds(600000));
  if (got.size() != sizeof id) fail("rendezvous: the NCCL unique id in the store has {} bytes", got.size());
  std::memcpy(&id, got.data(), sizeof id);
  ENGINE_NCCL_CHECK(ncclCommInitRank(&comm_, size, id, rank));
  ENGINE_CUDA_CHECK_DIST(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
  ENGINE_CUDA_CHECK_DIST(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

NcclBackend::~NcclBackend() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  if (comm_stream_ != nullptr) cudaStreamSynchronize(comm_stream_);
  if (comm_ != nullptr) ncclCommDestroy(comm_);
  if (ready_ != nullptr) cudaEventDestroy(ready_);
  if (comm_stream_ != nullptr) cudaStreamDestroy(comm_stream_);
}

template <typename Launch>
std::unique_ptr<rt::CommWork> NcclBackend::run(const char* op, std::vector<rt::Tensor> keep, Launch&& launch) {
  ENGINE_CUDA_CHECK_DIST(cudaEventRecord(ready_, compute_));
  ENGINE_CUDA_CHECK_DIST(cudaStreamWaitEvent(comm_stream_, ready_, 0));
  launch();
  cudaEvent_t ev = nullptr;
  ENGINE_CUDA_CHECK_DIST(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  std::shared_ptr<CUevent_st> done(ev, [](CUevent_st* e) { cudaEventDestroy(e); });
  ENGINE_CUDA_CHECK_DIST(cudaEventRecord(ev, comm_stream_));
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(Pending{done, op, ++seq_, std::chrono::steady_clock::now()});
  }
  cv_.notify_all();
  return std::make_unique<NcclWork>(std::move(done), compute_, std::move(keep));
}

std::unique_ptr<rt::CommWork> NcclBackend::all_reduce_sum(rt::Tensor& t) {
  check_cuda_tensor(t, "all_reduce_sum");
  const ncclDataType_t type = nccl_type(t, "all_reduce_sum");
  return run("all_reduce_sum", {t}, [&] {
    ENGINE_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), type, ncclSum,
                                    comm_, comm_stream_));
  });
}

std::unique_ptr<rt::CommWork> NcclBackend::broadcast(rt::Tensor& t, int root) {
  check_cuda_tensor(t, "broadcast");
  return run("broadcast", {t}, [&] {
    ENGINE_NCCL_CHECK(ncclBroadcast(t.raw_data(), t.raw_data(), t.nbytes(), ncclUint8, root, comm_, comm_stream_));
  });
}

std::unique_ptr<rt::CommWork> NcclBackend::all_gather(const rt::Tensor& shard, rt::Tensor& full) {
  check_cuda_tensor(shard, "all_gather");
  check_cuda_tensor(full, "all_gather");
  return run("all_gather", {shard, full}, [&] {
    ENGINE_NCCL_CHECK(ncclAllGather(shard.raw_data(), full.raw_data(), shard.nbytes(), ncclUint8, comm_,
                                    comm_stream_));
  });
}

std::unique_ptr<rt::CommWork> NcclBackend::reduce_scatter_sum(const rt::Tensor& full, rt::Tensor& shard) {
  check_cuda_tensor(full, "reduce_scatter_sum");
  check_cuda_tensor(shard, "reduce_scatter_sum");
  const ncclDataType_t type = nccl_type(full, "reduce_scatter_sum");
  return run("reduce_scatter_sum", {full, shard}, [&] {
    ENGINE_NCCL_CHECK(ncclReduceScatter(full.raw_data(), shard.raw_data(), static_cast<size_t>(shard.numel()),
                                        type, ncclSum, comm_, comm_stream_));
  });
}

void NcclBackend::synchronize() { ENGINE_CUDA_CHECK_DIST(cudaStreamSynchronize(comm_stream_)); }

void NcclBackend::watchdog_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    const auto now = std::chrono::steady_clock::now();
    for (auto it = pending_.begin(); it != pending_.end();) {
      const cudaError_t q = cudaEventQuery(it->done.get());
      if (q == cudaSuccess) {
        it = pending_.erase(it);
        continue;
      }
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      std::string cause;
      if (q != cudaErrorNotReady) cause = cudaGetErrorString(q);
      if (async != ncclSuccess && async != ncclInProgress) cause = ncclGetErrorString(async);
      if (cause.empty() && now - it->started > timeout_)
        cause = fmt::format("not finished after {} s", timeout_.count() / 1000.0);
      if (!cause.empty()) {
        const std::string op = "nccl " + it->op;
        const uint64_t seq = it->seq;
        lock.unlock();
        spdlog::error("{}", group_->describe_failure(op, seq, cause));
        ncclCommAbort(comm_);
        std::_Exit(1);
      }
      ++it;
    }
  }
}

}  // namespace engine::dist
