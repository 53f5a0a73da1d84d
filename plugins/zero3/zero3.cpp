// zero3: ZeRO stage 3 (DeepSpeed's; torch FSDP's FULL_SHARD per parameter): every parameter, the frozen base
// included, its gradient and its optimizer state are sharded over the ranks, and a parameter exists whole
// only while the block that uses it runs.
//
// Placement (setup, ABI 1.1 param_set_local): every root parameter is cut into `world` flat shards of
// ceil(numel / world) elements (the last padded with zeros); rank r keeps shard r. The engine applies it once
// the weights are loaded, so each rank holds about 1/world of the parameters at rest.
//
// Per micro-batch, at the block seam (docs/distributed.md has the timeline):
//   before_block(b, forward)   gather block b's parameters (one all-gather each)
//   after_block(b, forward)    release them (the memory goes back; the tape's references to them stay valid)
//   before_block(b, backward)  gather them again (before the engine replays a checkpointed block)
//   after_block(b, backward)   reduce-scatter each trainable gradient into its local shard, release
//   before_step                the parameters outside blocks (embedding, final norm, lm_head: gathered on
//                              first use in the forward and kept through the backward) get the same reduce
//                              and release
// The optimizer (ENG_OPT_CAP_SHARDED) steps the local shards with their local gradients; the engine sums
// the squared gradient norm over ranks. Nothing is needed after the step: the next gather reads the updated
// shards.
//
// Not done here: the collectives are one per parameter and synchronous (no bucketing of small parameters
// into one all-gather, no prefetch of block b+1 while block b computes), and quantized base weights are
// refused (no ENG_PAR_CAP_QUANTIZED).
#include <map>
#include <string>
#include <vector>

#include "engine/cpp/json.hpp"
#include "engine/cpp/parallel.hpp"

namespace {

using engine::sdk::Error;
using engine::sdk::Host;
using engine::sdk::Json;
using engine::sdk::Param;
using engine::sdk::ParamInfo;

constexpr char kSchema[] = R"json({"type": "object", "properties": {}})json";

struct Group {
  std::vector<Param> params;     // every root parameter declared in the block
  std::vector<Param> trainable;  // those with a gradient
};

class Zero3 : public engine::sdk::Parallel {
 public:
  Zero3(Host&, const std::string& options_json) {
    Json o = Json::parse(options_json.empty() ? "{}" : options_json);
    for (const auto& [key, value] : o.members()) {
      (void)value;
      if (key != "timeout_s") throw Error("zero3: unknown option '" + key + "'; the options are timeout_s");
    }
  }

  void setup(Host& host) override {
    const int64_t world = host.world_size();
    int64_t total = 0, local = 0;
    for (Param p : host.params()) {
      const ParamInfo info = host.info(p);
      if ((info.flags & ENG_PARAM_TIED) != 0) continue;  // shares its root's storage
      if ((info.flags & ENG_PARAM_QUANTIZED) != 0)
        throw Error("zero3: parameter " + info.name +
                        " is quantized; sharding quantized base weights is not implemented (zero3 lacks "
                        "ENG_PAR_CAP_QUANTIZED): drop [quantizer] or use ddp",
                    ENG_ERR_UNSUPPORTED);
      const int64_t shard = (info.numel() + world - 1) / world;
      host.param_set_local(p, shard);
      Group& g = info.block >= 0 ? blocks_[info.block] : outside_;
      g.params.push_back(p);
      if (info.trainable()) g.trainable.push_back(p);
      total += info.numel();
      local += shard;
    }
    if (host.rank() == 0)
      host.info("zero3: " + std::to_string(world) + " ranks; each keeps " + std::to_string(local) + " of " +
                std::to_string(total) + " parameter elements (gathered per block: " +
                std::to_string(blocks_.size()) + " blocks, " + std::to_string(outside_.params.size()) +
                " parameters outside blocks)");
  }

  void before_block(Host& host, int32_t block, eng_phase) override {
    for (Param p : group(block).params) host.param_gather(p);
  }

  void after_block(Host& host, int32_t block, eng_phase phase) override {
    const Group& g = group(block);
    if (phase == ENG_PHASE_BACKWARD)
      for (Param p : g.trainable) host.param_reduce_grad(p);
    for (Param p : g.params) host.param_release(p);
  }

  void before_step(Host& host) override {
    for (Param p : outside_.trainable) host.param_reduce_grad(p);
    // A block parameter that also took a gradient outside its block's backward (none in the models here)
    // still reaches its shard. Every rank runs the same graph, so they agree on which.
    for (auto& [block, g] : blocks_)
      for (Param p : g.trainable)
        if (host.grad(p)) host.param_reduce_grad(p);
    for (Param p : outside_.params) host.param_release(p);
  }

 private:
  const Group& group(int32_t block) const {
    auto it = blocks_.find(block);
    return it == blocks_.end() ? empty_ : it->second;
  }

  std::map<int32_t, Group> blocks_;
  Group outside_;
  Group empty_;
};

}  // namespace

ENGINE_REGISTER_PARALLEL(Zero3, "zero3", "0.1.0",
                         "ZeRO-3: parameters, gradients and optimizer state sharded over ranks per parameter, "
                         "gathered per block",
                         kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA | ENG_PAR_CAP_SHARDS_PARAMS)
