// zero3: ZeRO stage 3 (DeepSpeed's; torch FSDP's FULL_SHARD per parameter): every parameter, the frozen base
// included, its gradient and its optimizer state are sharded over the ranks, and a parameter exists whole
// only while the block that uses it runs.
//
// Placement (setup, ABI 1.1 param_set_local): every root parameter is cut into `world` flat shards of
// ceil(numel / world) elements (the last padded with zeros); rank r keeps shard r. The engine applies it once
// the weights are loaded, so each rank holds about 1/world of the parameters at rest. The block hooks
// (gather, release, reduce-scatter: plugins/common/sharded_strategy.hpp, docs/distributed.md) act per
// parameter; fsdp is the same protocol with one flat buffer per block and dtype.
//
// Not done here: the collectives are synchronous (no prefetch of block b+1 while block b computes), and
// quantized base weights are refused (no ENG_PAR_CAP_QUANTIZED).
#include <string>

#include "plugins/common/sharded_strategy.hpp"
#include "plugins/common/strategy_options.hpp"

namespace {

using engine::sdk::Host;

constexpr char kSchema[] = R"json({"type": "object", "properties": {}})json";

class Zero3 : public engine::plugins_common::ShardedStrategy {
 public:
  Zero3(Host&, const std::string& options_json) {
    engine::plugins_common::parse_strategy_options("zero3", options_json, {});
  }

  void setup(Host& host) override {
    const int64_t world = host.world_size();
    int64_t total = 0, local = 0;
    for (const auto& [p, info] : roots(host, "zero3")) {
      const int64_t shard = (info.numel() + world - 1) / world;
      host.param_set_local(p, shard);
      add_unit(info.block, Unit{{p}, info.trainable()});
      total += info.numel();
      local += shard;
    }
    if (host.rank() == 0)
      host.info("zero3: " + std::to_string(world) + " ranks; each keeps " + std::to_string(local) + " of " +
                std::to_string(total) + " parameter elements (gathered per parameter, per block: " +
                std::to_string(block_count()) + " blocks, " + std::to_string(outside_count()) +
                " parameters outside blocks)");
  }
};

}  // namespace

ENGINE_REGISTER_PARALLEL(Zero3, "zero3", "0.1.0",
                         "ZeRO-3: parameters, gradients and optimizer state sharded over ranks per parameter, "
                         "gathered per block",
                         kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA | ENG_PAR_CAP_SHARDS_PARAMS)
