// zero2: ZeRO stage 2 (optimizer state and gradients sharded over ranks, parameters replicated), with whole
// parameters as the unit of sharding (as torch's ZeroRedundancyOptimizer).
//
// setup assigns every trainable parameter one owner rank, greedily by size in declaration order (the rank
// holding the fewest elements so far takes the next parameter), the same on every rank. param_owner (ABI
// 1.1) tells the engine, which then gives each rank's optimizer only the parameters it owns, so its state
// (AdamW's two moments) is about 1/world of the whole. before_step sums the gradients over ranks in buckets
// (as ddp); the engine then frees the gradients of parameters this rank does not own and sums the squared
// gradient norm over ranks. after_step broadcasts every parameter from its owner, so the replicas are equal
// again for the next forward.
//
// Not done here: the gradient reduce is an all-reduce (a reduce to the owner would move half the bytes), and
// gradients are whole during backward (they are freed after the reduce, not reduced bucket by bucket as
// backward produces them), so the peak memory of a step still holds every gradient once.
#include <map>
#include <string>
#include <vector>

#include "engine/cpp/parallel.hpp"
#include "plugins/common/grad_buckets.hpp"
#include "plugins/common/strategy_options.hpp"

namespace {

using engine::sdk::Host;
using engine::sdk::Param;
using engine::sdk::ParamInfo;

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "bucket_mb": {"type": "number", "default": 25, "minimum": 0, "description": "gradients are all-reduced in buckets of at most this many MiB (0: one all-reduce per gradient)"}
}})json";

class Zero2 : public engine::sdk::Parallel {
 public:
  Zero2(Host&, const std::string& options_json) {
    namespace common = engine::plugins_common;
    bucket_bytes_ = common::bucket_bytes_option("zero2", common::parse_strategy_options("zero2", options_json, {"bucket_mb"}));
  }

  void setup(Host& host) override {
    std::vector<int64_t> load(static_cast<size_t>(host.world_size()), 0);
    for (Param p : host.params()) {
      const ParamInfo info = host.info(p);
      if (!info.trainable() || (info.flags & ENG_PARAM_TIED) != 0) continue;
      size_t best = 0;
      for (size_t r = 1; r < load.size(); ++r)
        if (load[r] < load[best]) best = r;
      load[best] += info.numel();
      owner_[info.name] = static_cast<int32_t>(best);
      order_.push_back(p);
    }
    const size_t me = static_cast<size_t>(host.rank());
    int64_t total = 0;
    for (int64_t n : load) total += n;
    host.info("zero2: rank " + std::to_string(host.rank()) + " owns " + std::to_string(load[me]) + " of " +
              std::to_string(total) + " trainable elements (its optimizer state and gradients)");
  }

  int32_t param_owner(Host& host, Param p) override {
    auto it = owner_.find(host.info(p).name);
    return it == owner_.end() ? -1 : it->second;
  }

  void before_step(Host& host) override { engine::plugins_common::sum_grads_over_ranks(host, bucket_bytes_); }

  void after_step(Host& host) override {
    for (Param p : order_) host.broadcast(host.value(p), owner_.at(host.info(p).name));
  }

 private:
  int64_t bucket_bytes_ = 0;
  std::map<std::string, int32_t> owner_;
  std::vector<Param> order_;
};

}  // namespace

ENGINE_REGISTER_PARALLEL(Zero2, "zero2", "0.1.0",
                         "ZeRO-2: optimizer state and gradients sharded over ranks by parameter, parameters replicated",
                         kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA | ENG_PAR_CAP_QUANTIZED)
