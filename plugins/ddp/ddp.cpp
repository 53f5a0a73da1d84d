// ddp: distributed data parallelism with replicated parameters (torch's DistributedDataParallel).
//
// Every rank holds every parameter; the engine gives each rank its own shard of the global batch and scales
// every micro-batch's loss by 1 / (label tokens of the whole global batch, all ranks), so the gradient of
// the global batch is the SUM over ranks of the local gradients. before_step sums them: trainable gradients
// are packed, in declaration order, into buckets of at most bucket_mb MiB (one dtype per bucket), each
// bucket is all-reduced as one flat tensor and unpacked. Then every rank steps the same optimizer on the
// same gradients and the replicas stay identical (the engine broadcasts rank 0's trainable values once at
// the start).
//
// Overlap: the reduce runs after the last backward of the step, not during it. grad_ready fires after every
// accumulation into a gradient, and the host table does not say which micro-batch is the step's last, so a
// bucket cannot be known final earlier without a new ABI entry.
#include <string>

#include "engine/cpp/parallel.hpp"
#include "plugins/common/grad_buckets.hpp"
#include "plugins/common/strategy_options.hpp"

namespace {

using engine::sdk::Host;

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "bucket_mb": {"type": "number", "default": 25, "minimum": 0, "description": "gradients are all-reduced in buckets of at most this many MiB (0: one all-reduce per gradient)"}
}})json";

class Ddp : public engine::sdk::Parallel {
 public:
  Ddp(Host&, const std::string& options_json) {
    namespace common = engine::plugins_common;
    bucket_bytes_ = common::bucket_bytes_option("ddp", common::parse_strategy_options("ddp", options_json, {"bucket_mb"}));
  }

  void setup(Host& host) override {
    if (host.rank() == 0)
      host.info("ddp: " + std::to_string(host.world_size()) + " replicas, gradients summed in buckets of " +
                std::to_string(bucket_bytes_ / (1024 * 1024)) + " MiB after backward");
  }

  void before_step(Host& host) override { engine::plugins_common::sum_grads_over_ranks(host, bucket_bytes_); }

 private:
  int64_t bucket_bytes_ = 0;
};

}  // namespace

ENGINE_REGISTER_PARALLEL(Ddp, "ddp", "0.1.0", "data parallel: replicated parameters, gradients summed over ranks in buckets",
                         kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA | ENG_PAR_CAP_QUANTIZED)
