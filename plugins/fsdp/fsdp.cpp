// fsdp: fully sharded data parallelism with flat buffers (torch FSDP's FULL_SHARD with one FlatParameter per
// block): parameters (the frozen base too), gradients and optimizer state sharded over the ranks, a block's
// parameters of one storage dtype and trainability flattened into one buffer that is sharded as a whole.
//
// Placement (setup, ABI 1.1 param_set_local_flat): per block, its root parameters are grouped by (trainable,
// storage dtype: fp32 for trainable masters, the declared dtype for the frozen base), in declaration order;
// each group is one flat buffer cut into `world` equal shards (the last padded with zeros), rank r keeping
// shard r. The embedding, final norm and lm_head form the same groups outside the blocks. A LoRA block is two
// buffers (the bf16 base, the fp32 adapters), a fully trained one is one.
//
// The block hooks are zero3's (plugins/common/sharded_strategy.hpp), one collective per buffer instead of one
// per parameter: a llama block costs 2 all-gathers and 1 reduce-scatter per micro-batch under LoRA where
// zero3 costs 2 x 23 all-gathers and 14 reduce-scatters. The price is the flat layout: a rank's shard starts
// and ends inside parameters, so the optimizer steps each parameter's part of the shard (possibly empty), and
// checkpoints record those parts (docs/distributed.md, "Checkpoints on another number of ranks").
//
// Not done here: prefetching block b+1's gather while block b computes; quantized (nf4) bases are refused
// (no ENG_PAR_CAP_QUANTIZED).
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "plugins/common/sharded_strategy.hpp"
#include "plugins/common/strategy_options.hpp"

namespace {

using engine::sdk::Host;
using engine::sdk::Param;

constexpr char kSchema[] = R"json({"type": "object", "properties": {}})json";

class Fsdp : public engine::plugins_common::ShardedStrategy {
 public:
  Fsdp(Host&, const std::string& options_json) {
    engine::plugins_common::parse_strategy_options("fsdp", options_json, {});
  }

  void setup(Host& host) override {
    // (block, trainable, storage dtype) -> members in declaration order; std::map keeps the order the same on
    // every rank.
    std::map<std::tuple<int32_t, bool, int>, std::vector<Param>> groups;
    int64_t total = 0;
    for (const auto& [p, info] : roots(host, "fsdp")) {
      const eng_dtype storage = info.trainable() ? ENG_F32 : info.dtype;
      groups[{info.block, info.trainable(), static_cast<int>(storage)}].push_back(p);
      total += info.numel();
    }
    for (auto& [key, members] : groups) {
      host.param_set_local_flat(members);
      add_unit(std::get<0>(key), Unit{members, std::get<1>(key)});
    }
    const int64_t world = host.world_size();
    if (host.rank() == 0)
      host.info("fsdp: " + std::to_string(world) + " ranks; each keeps about " +
                std::to_string((total + world - 1) / world) + " of " + std::to_string(total) +
                " parameter elements in " + std::to_string(groups.size()) + " flat buffers (" +
                std::to_string(block_count()) + " blocks, " + std::to_string(outside_count()) +
                " buffers outside blocks)");
  }
};

}  // namespace

ENGINE_REGISTER_PARALLEL(Fsdp, "fsdp", "0.1.0",
                         "FSDP: parameters, gradients and optimizer state sharded over ranks in one flat buffer "
                         "per block and dtype, gathered per block",
                         kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA | ENG_PAR_CAP_SHARDS_PARAMS)
