#include "engine/dist/process_group.hpp"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

#include "engine/core/error.hpp"
#if ENGINE_HAVE_CUDA
#include "engine/dist/nccl_backend.hpp"
#endif

namespace engine::dist {

namespace {

using Clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;
constexpr ms kHeartbeatEvery{500};
constexpr int64_t kStaleAfterMs = 3000;  // six missed heartbeats

// Gloo's rendezvous through our store (keys under the "gloo/" prefix via PrefixStore).
class GlooStore final : public gloo::rendezvous::Store {
 public:
  GlooStore(TcpStoreClient& store, ms timeout) : store_(&store), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    store_->set(key, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    const std::string v = store_->get(key, timeout_);
    return {v.begin(), v.end()};
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const ms& timeout) override {
    for (const std::string& k : keys) store_->get(k, timeout);
  }

 private:
  TcpStoreClient* store_;
  ms timeout_;
};

class FutureWork final : public rt::CommWork {
 public:
  explicit FutureWork(std::future<void> f) : f_(std::move(f)) {}
  void wait() override {
    if (f_.valid()) f_.get();
  }

 private:
  std::future<void> f_;
};

[[maybe_unused]] bool is_cuda(const rt::Tensor& t) { return t.device().type() == rt::DeviceType::CUDA; }

void check_cpu(const rt::Tensor& t, const char* op) {
  if (!t.defined()) fail("{}: the tensor is undefined", op);
  if (!t.is_contiguous()) fail("{}: the tensor {} must be contiguous", op, t.describe());
}

// The element type of a CPU tensor as Gloo's reduction needs it.
template <typename Fn>
void with_cpu_type(const rt::Tensor& t, const char* op, Fn&& fn) {
  switch (t.dtype()) {
    case ENG_F32: return fn(float{});
    case ENG_F64: return fn(double{});
    case ENG_I32: return fn(int32_t{});
    case ENG_I64: return fn(int64_t{});
    default:
      fail("{}: {} tensors are not supported by the CPU (Gloo) collectives (f32, f64, i32, i64 are)", op,
           t.describe());
  }
}

std::string gloo_hostname(const DistEnv& env) {
  if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") return "127.0.0.1";
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) fail("gethostname failed (needed for the Gloo transport)");
  return name;
}

// A full Gloo mesh of `size` ranks (this one `rank`) through the store's keys under `prefix`; `what` names it
// in the failure. Collectives then time out after `timeout`.
std::shared_ptr<gloo::Context> connect_gloo(const DistEnv& env, TcpStoreClient& store, int rank, int size,
                                            const std::string& prefix, const ProcessGroupOptions& options,
                                            const std::string& what) {
  gloo::transport::tcp::attr attr;
  attr.hostname = gloo_hostname(env);
  auto dev = gloo::transport::tcp::CreateDevice(attr);
  auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
  ctx->setTimeout(options.rendezvous_timeout);
  GlooStore gstore(store, options.rendezvous_timeout);
  gloo::rendezvous::PrefixStore prefixed(prefix, gstore);
  try {
    ctx->connectFullMesh(prefixed, dev);
  } catch (const std::exception& e) {
    fail("rendezvous at {}: connecting the Gloo mesh of {} ({} ranks) failed: {}", store.address(), what, size,
         e.what());
  }
  ctx->setTimeout(options.timeout);
  return ctx;
}

}  // namespace

ProcessGroup::ProcessGroup(const DistEnv& env, rt::Device& device, ProcessGroupOptions options)
    : env_(env), options_(options), device_(&device) {
  if (env.rank == 0) server_ = std::make_unique<TcpStoreServer>(env.master_port);
  store_ = std::make_unique<TcpStoreClient>(env.master_addr, env.master_port, options.rendezvous_timeout);
  heartbeat_store_ = std::make_unique<TcpStoreClient>(env.master_addr, env.master_port, options.rendezvous_timeout,
                                                      ms(3000));
  // A second job on the same port would mix ranks: the world size is checked against rank 0's.
  if (env.rank == 0) store_->set("world_size", std::to_string(env.world_size));
  const std::string world = store_->get("world_size", options.rendezvous_timeout);
  if (world != std::to_string(env.world_size))
    fail("rendezvous at {}: rank 0 started a job of world size {} but this rank has WORLD_SIZE {}",
         store_->address(), world, env.world_size);

  world_.gloo = connect_gloo(env, *store_, env.rank, env.world_size, "gloo", options, "the job");
  world_.rank = env.rank;
  world_.size = env.world_size;
  worker_ = std::thread([this] { worker_loop(); });
  heartbeat_ = std::thread([this] { heartbeat_loop(); });
#if ENGINE_HAVE_CUDA
  if (device.type() == rt::DeviceType::CUDA)
    world_.nccl = std::make_shared<NcclBackend>(*this, *store_, "nccl/id", env.rank, env.world_size, device,
                                                options.timeout);
#else
  (void)device;
#endif
  spdlog::info("rank {} of {} joined through {} ({}; Gloo{})", env.rank, env.world_size, store_->address(),
               env.source, world_.nccl ? " and NCCL" : "");
}

// The communicator of a subgroup: the parent's collectives on the subgroup's own Gloo mesh / NCCL
// communicator (ProcessGroup::subgroup).
class SubGroup final : public rt::Communicator {
 public:
  SubGroup(ProcessGroup& parent, ProcessGroup::Comms comms) : parent_(&parent), c_(std::move(comms)) {}
  int rank() const override { return c_.rank; }
  int world_size() const override { return c_.size; }
  void all_reduce_sum(rt::Tensor& t) override { all_reduce_sum_async(t)->wait(); }
  void broadcast(rt::Tensor& t, int root) override { broadcast_async(t, root)->wait(); }
  void all_gather(const rt::Tensor& shard, rt::Tensor& full) override { all_gather_async(shard, full)->wait(); }
  void reduce_scatter_sum(const rt::Tensor& full, rt::Tensor& shard) override {
    reduce_scatter_sum_async(full, shard)->wait();
  }
  void barrier() override { parent_->barrier_on(c_); }
  std::unique_ptr<rt::CommWork> all_reduce_sum_async(rt::Tensor& t) override { return parent_->all_reduce_sum_on(c_, t); }
  std::unique_ptr<rt::CommWork> all_gather_async(const rt::Tensor& shard, rt::Tensor& full) override {
    return parent_->all_gather_on(c_, shard, full);
  }
  std::unique_ptr<rt::CommWork> reduce_scatter_sum_async(const rt::Tensor& full, rt::Tensor& shard) override {
    return parent_->reduce_scatter_sum_on(c_, full, shard);
  }
  std::unique_ptr<rt::CommWork> broadcast_async(rt::Tensor& t, int root) override {
    return parent_->broadcast_on(c_, t, root);
  }

 private:
  ProcessGroup* parent_;
  ProcessGroup::Comms c_;
};

std::unique_ptr<rt::Communicator> ProcessGroup::subgroup(const std::string& name, int color) {
  // Every rank publishes its color; the ranks of this color, in rank order, are the group.
  store_->set(fmt::format("group/{}/{}", name, env_.rank), std::to_string(color));
  std::vector<int> members;
  for (int r = 0; r < env_.world_size; ++r) {
    const std::string c = store_->get(fmt::format("group/{}/{}", name, r), options_.rendezvous_timeout);
    if (c == std::to_string(color)) members.push_back(r);
  }
  Comms c;
  c.size = static_cast<int>(members.size());
  c.rank = static_cast<int>(std::find(members.begin(), members.end(), env_.rank) - members.begin());
  c.label = fmt::format("{} {}", name, color);
  c.gloo = connect_gloo(env_, *store_, c.rank, c.size, fmt::format("gloo/{}/{}", name, color), options_,
                        fmt::format("subgroup {} {}", name, color));
#if ENGINE_HAVE_CUDA
  if (device_->type() == rt::DeviceType::CUDA)
    c.nccl = std::make_shared<NcclBackend>(*this, *store_, fmt::format("nccl/id/{}/{}", name, color), c.rank, c.size,
                                           *device_, options_.timeout);
#endif
  return std::make_unique<SubGroup>(*this, std::move(c));
}

ProcessGroup::~ProcessGroup() {
  world_.nccl.reset();
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  {
    std::lock_guard<std::mutex> lock(hb_mu_);
    hb_stop_ = true;
  }
  hb_cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  world_.gloo.reset();
  heartbeat_store_.reset();
  store_.reset();
  server_.reset();
}

void ProcessGroup::set_step(int64_t step) {
  std::lock_guard<std::mutex> lock(state_mu_);
  step_ = step;
}

ProcessGroup::Begun ProcessGroup::begin(const char* op) {
  std::lock_guard<std::mutex> lock(state_mu_);
  ++seq_;
  current_ = seq_;
  current_op_ = op;
  return {seq_, step_};
}

void ProcessGroup::end(uint64_t seq) {
  std::lock_guard<std::mutex> lock(state_mu_);
  if (current_ == seq) current_ = 0;
}

void ProcessGroup::heartbeat_loop() {
  const std::string key = fmt::format("hb/{}", env_.rank);
  std::unique_lock<std::mutex> lock(hb_mu_);
  while (!hb_stop_) {
    std::string value;
    {
      std::lock_guard<std::mutex> s(state_mu_);
      value = fmt::format("{} {} {}", seq_, step_, current_ != 0 ? current_op_ : std::string("-"));
    }
    lock.unlock();
    try {
      heartbeat_store_->set(key, value);
    } catch (const std::exception&) {
      // The store is gone (rank 0 finished first, or failed): a collective that needs it will say so.
    }
    lock.lock();
    hb_cv_.wait_for(lock, kHeartbeatEvery, [this] { return hb_stop_; });
  }
}

std::string ProcessGroup::describe_failure(const std::string& op, uint64_t seq, const std::string& cause) {
  int64_t step = 0;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    step = step_;
  }
  std::string missing;
  try {
    TcpStoreClient probe(env_.master_addr, env_.master_port, ms(3000), ms(3000));
    for (int r = 0; r < env_.world_size; ++r) {
      if (r == env_.rank) continue;
      const std::string key = fmt::format("hb/{}", r);
      std::optional<int64_t> age = probe.age_ms(key);
      std::optional<std::string> hb = probe.try_get(key);
      if (!age || !hb) {
        missing += fmt::format("; rank {} never sent a heartbeat", r);
        continue;
      }
      std::istringstream in(*hb);
      uint64_t their_seq = 0;
      int64_t their_step = 0;
      std::string their_op;
      in >> their_seq >> their_step >> their_op;
      if (*age > kStaleAfterMs) {
        missing += fmt::format("; rank {} is not answering (no heartbeat for {:.1f} s; it was at collective #{}{}, "
                               "step {})",
                               r, static_cast<double>(*age) / 1000.0, their_seq,
                               their_op == "-" ? "" : " " + their_op, their_step);
      } else if (their_seq < seq) {
        missing += fmt::format("; rank {} is alive but has not reached collective #{} (it is at #{}, step {})", r,
                               seq, their_seq, their_step);
      }
    }
    if (missing.empty()) missing = "; every other rank is alive and at this collective (network failure?)";
  } catch (const std::exception&) {
    missing = env_.rank == 0 ? "; the rendezvous store is not answering"
                             : "; rank 0 is not answering (it hosts the rendezvous store at " +
                                   store_->address() + ")";
  }
  return fmt::format("collective {} (#{}) at step {} failed on rank {} of {} after at most {} s (parallel.timeout_s): "
                     "{}{}",
                     op, seq, step, env_.rank, env_.world_size, options_.timeout.count() / 1000.0, cause,
                     missing);
}

void ProcessGroup::worker_loop() {
  while (true) {
    std::packaged_task<void()> task;
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

std::unique_ptr<rt::CommWork> ProcessGroup::enqueue(const char* op, Comms& c, std::function<void(uint32_t)> fn) {
  const uint32_t tag = ++c.tag;  // the caller's order, the same on every rank of c
  std::packaged_task<void()> task([this, op, tag, fn = std::move(fn)] {
    const Begun b = begin(op);
    try {
      fn(tag);
    } catch (const gloo::Exception& e) {
      end(b.seq);
      throw Error(describe_failure(op, b.seq, e.what()), ENG_ERR_IO);
    }
    end(b.seq);
  });
  std::future<void> f = task.get_future();
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    queue_.push_back(std::move(task));
  }
  queue_cv_.notify_one();
  return std::make_unique<FutureWork>(std::move(f));
}

std::unique_ptr<rt::CommWork> ProcessGroup::all_reduce_sum_async(Tensor& t) { return all_reduce_sum_on(world_, t); }
std::unique_ptr<rt::CommWork> ProcessGroup::broadcast_async(Tensor& t, int root) { return broadcast_on(world_, t, root); }
std::unique_ptr<rt::CommWork> ProcessGroup::all_gather_async(const Tensor& shard, Tensor& full) {
  return all_gather_on(world_, shard, full);
}
std::unique_ptr<rt::CommWork> ProcessGroup::reduce_scatter_sum_async(const Tensor& full, Tensor& shard) {
  return reduce_scatter_sum_on(world_, full, shard);
}
void ProcessGroup::barrier() { barrier_on(world_); }

std::unique_ptr<rt::CommWork> ProcessGroup::all_reduce_sum_on(Comms& c, Tensor& t) {
#if ENGINE_HAVE_CUDA
  if (t.defined() && is_cuda(t)) {
    if (!c.nccl) fail("all_reduce_sum of the CUDA tensor {}: this run has no NCCL communicator", t.describe());
    return c.nccl->all_reduce_sum(t);
  }
#endif
  check_cpu(t, "all_reduce_sum");
  return enqueue("all_reduce_sum", c, [g = c.gloo, t](uint32_t tag) {
    with_cpu_type(t, "all_reduce_sum", [&](auto zero) {
      using T = decltype(zero);
      gloo::AllreduceOptions o(g);
      o.setOutput<T>(static_cast<T*>(t.raw_data()), static_cast<size_t>(t.numel()));
      o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
      o.setTag(tag);
      gloo::allreduce(o);
    });
  });
}

std::unique_ptr<rt::CommWork> ProcessGroup::broadcast_on(Comms& c, Tensor& t, int root) {
  if (root < 0 || root >= c.size) fail("broadcast from rank {}: ranks are 0..{}", root, c.size - 1);
#if ENGINE_HAVE_CUDA
  if (t.defined() && is_cuda(t)) {
    if (!c.nccl) fail("broadcast of the CUDA tensor {}: this run has no NCCL communicator", t.describe());
    return c.nccl->broadcast(t, root);
  }
#endif
  check_cpu(t, "broadcast");
  return enqueue("broadcast", c, [g = c.gloo, t, root](uint32_t tag) {
    gloo::BroadcastOptions o(g);
    o.setOutput<uint8_t>(static_cast<uint8_t*>(t.raw_data()), t.nbytes());
    o.setRoot(root);
    o.setTag(tag);
    gloo::broadcast(o);
  });
}

std::unique_ptr<rt::CommWork> ProcessGroup::all_gather_on(Comms& c, const Tensor& shard, Tensor& full) {
  if (full.defined() && shard.defined() && full.numel() != shard.numel() * c.size)
    fail("all_gather: the full tensor {} must hold world size {} x the shard {}", full.describe(), c.size,
         shard.describe());
  if (shard.defined() && full.defined() && shard.dtype() != full.dtype())
    fail("all_gather: dtypes differ ({} vs {})", shard.describe(), full.describe());
#if ENGINE_HAVE_CUDA
  if (shard.defined() && is_cuda(shard)) {
    if (!c.nccl) fail("all_gather of the CUDA tensor {}: this run has no NCCL communicator", shard.describe());
    return c.nccl->all_gather(shard, full);
  }
#endif
  check_cpu(shard, "all_gather");
  check_cpu(full, "all_gather");
  return enqueue("all_gather", c, [g = c.gloo, shard, full](uint32_t tag) {
    gloo::AllgatherOptions o(g);
    o.setInput<uint8_t>(static_cast<uint8_t*>(shard.raw_data()), shard.nbytes());
    o.setOutput<uint8_t>(static_cast<uint8_t*>(full.raw_data()), full.nbytes());
    o.setTag(tag);
    gloo::allgather(o);
  });
}

std::unique_ptr<rt::CommWork> ProcessGroup::reduce_scatter_sum_on(Comms& c, const Tensor& full, Tensor& shard) {
  if (full.defined() && shard.defined() && full.numel() != shard.numel() * c.size)
    fail("reduce_scatter_sum: the full tensor {} must hold world size {} x the shard {}", full.describe(),
         c.size, shard.describe());
  if (shard.defined() && full.defined() && shard.dtype() != full.dtype())
    fail("reduce_scatter_sum: dtypes differ ({} vs {})", shard.describe(), full.describe());
#if ENGINE_HAVE_CUDA
  if (full.defined() && is_cuda(full)) {
    if (!c.nccl)
      fail("reduce_scatter_sum of the CUDA tensor {}: this run has no NCCL communicator", full.describe());
    return c.nccl->reduce_scatter_sum(full, shard);
  }
#endif
  check_cpu(full, "reduce_scatter_sum");
  check_cpu(shard, "reduce_scatter_sum");
  // Gloo has no reduce-scatter in its option API: an all-reduce of a copy, then this rank's slice.
  return enqueue("reduce_scatter_sum", c, [g = c.gloo, rank = c.rank, size = c.size, full, shard](uint32_t tag) {
    with_cpu_type(full, "reduce_scatter_sum", [&](auto zero) {
      using T = decltype(zero);
      const auto n = static_cast<size_t>(full.numel());
      std::vector<T> sum(static_cast<const T*>(full.raw_data()), static_cast<const T*>(full.raw_data()) + n);
      gloo::AllreduceOptions o(g);
      o.setOutput<T>(sum.data(), n);
      o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
      o.setTag(tag);
      gloo::allreduce(o);
      const size_t per = n / static_cast<size_t>(size);
      std::copy_n(sum.data() + per * static_cast<size_t>(rank), per, static_cast<T*>(shard.raw_data()));
    });
  });
}

void ProcessGroup::barrier_on(Comms& c) {
#if ENGINE_HAVE_CUDA
  if (c.nccl) c.nccl->synchronize();
#endif
  enqueue("barrier", c,
          [g = c.gloo](uint32_t tag) {
            gloo::BarrierOptions o(g);
            o.setTag(tag);
            gloo::barrier(o);
          })
      ->wait();
}

}  // namespace engine::dist
