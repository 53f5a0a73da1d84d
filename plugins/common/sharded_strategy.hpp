// ShardedStrategy: the block-hook protocol that zero3 and fsdp share (docs/distributed.md, "How zero3 works").
//
// Parameters are placed in units; a unit is one flat buffer sharded over the ranks: one parameter in zero3
// (host param_set_local), a block's parameters of one storage dtype and trainability in fsdp (host
// param_set_local_flat). The host's gather, release and reduce of any member act on its whole unit, so the
// hooks below call them once per unit:
//   before_block(b, forward|backward)  gather block b's units (one all-gather each)
//   after_block(b, forward)            release them (the tape's references to them stay valid)
//   after_block(b, backward)           reduce-scatter each trainable unit's gradient into its local shard, release
//   before_step                        the units outside blocks (embedding, final norm, lm_head: gathered on
//                                      first use and kept through the backward) get the same reduce and release
// The optimizer (ENG_OPT_CAP_SHARDED) steps the local shards with their local gradients; the engine sums the
// squared gradient norm over ranks. Built against the SDK only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/cpp/parallel.hpp"

namespace engine::plugins_common {

class ShardedStrategy : public sdk::Parallel {
 public:
  struct Unit {
    std::vector<sdk::Param> params;  // one flat buffer: gather/release/reduce through params.front()
    bool trainable = false;
  };

  void before_block(sdk::Host& host, int32_t block, eng_phase) override {
    for (const Unit& u : units(block)) host.param_gather(u.params.front());
  }

  void after_block(sdk::Host& host, int32_t block, eng_phase phase) override {
    for (const Unit& u : units(block)) {
      if (phase == ENG_PHASE_BACKWARD && u.trainable) host.param_reduce_grad(u.params.front());
      host.param_release(u.params.front());
    }
  }

  void before_step(sdk::Host& host) override {
    for (const Unit& u : outside_)
      if (u.trainable) host.param_reduce_grad(u.params.front());
    // A block parameter that also took a gradient outside its block's backward (none in the models here)
    // still reaches its shard. Every rank runs the same graph, so they agree on which.
    for (const auto& [block, us] : blocks_)
      for (const Unit& u : us) {
        if (!u.trainable) continue;
        bool pending = false;
        for (const sdk::Param& p : u.params) pending = pending || static_cast<bool>(host.grad(p));
        if (pending) host.param_reduce_grad(u.params.front());
      }
    for (const Unit& u : outside_) host.param_release(u.params.front());
  }

 protected:
  // The root parameters to place (tied ones share their root's storage), each with its ParamInfo; quantized
  // ones are refused by name (no strategy here has ENG_PAR_CAP_QUANTIZED).
  static std::vector<std::pair<sdk::Param, sdk::ParamInfo>> roots(sdk::Host& host, const std::string& strategy) {
    std::vector<std::pair<sdk::Param, sdk::ParamInfo>> out;
    for (sdk::Param p : host.params()) {
      sdk::ParamInfo info = host.info(p);
      if ((info.flags & ENG_PARAM_TIED) != 0) continue;
      if ((info.flags & ENG_PARAM_QUANTIZED) != 0)
        throw sdk::Error(strategy + ": parameter " + info.name +
                             " is quantized; sharding quantized base weights is not implemented (" + strategy +
                             " lacks ENG_PAR_CAP_QUANTIZED): drop [quantizer] or use ddp",
                         ENG_ERR_UNSUPPORTED);
      out.emplace_back(p, std::move(info));
    }
    return out;
  }

  // Records a placed unit under its block (-1: outside blocks).
  void add_unit(int32_t block, Unit unit) {
    (block >= 0 ? blocks_[block] : outside_).push_back(std::move(unit));
  }

  size_t block_count() const { return blocks_.size(); }
  size_t outside_count() const { return outside_.size(); }

 private:
  const std::vector<Unit>& units(int32_t block) const {
    auto it = blocks_.find(block);
    return it == blocks_.end() ? none_ : it->second;
  }

  std::map<int32_t, std::vector<Unit>> blocks_;
  std::vector<Unit> outside_;
  std::vector<Unit> none_;
};

}  // namespace engine::plugins_common
