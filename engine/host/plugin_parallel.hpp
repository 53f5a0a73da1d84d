// PluginParallel: the run's parallel-strategy plugin (eng_parallel_vtable + self) behind rt::BlockHooks, the
// call point of the block seam. HostSession::block_begin/block_end call before_block/after_block(Forward);
// the tape calls them with Backward around each block it backpropagates (before a checkpoint replay, so a
// sharding strategy can gather the block's parameters first). grad_ready is wired to each trainable
// parameter's GradSink (called after every accumulation into it). The remaining hooks (setup, before_step,
// after_step, save/load state) are called by the session and trainer through the methods below.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/abi/parallel.h"
#include "engine/host/host_session.hpp"

namespace engine::host {

// What place_layers gave (eng_layer_map's outputs).
struct LayerMap {
  int devices = 1;
  std::vector<int32_t> block_device;  // per decoder block
  std::vector<int32_t> param_device;  // per parameter, in the parameter store's order
};

class PluginParallel final : public rt::BlockHooks {
 public:
  PluginParallel(HostSession& session, const eng_host_api* host, const eng_parallel_vtable* vtable,
                 std::string name, const std::string& options_json);
  ~PluginParallel() override;
  PluginParallel(const PluginParallel&) = delete;
  PluginParallel& operator=(const PluginParallel&) = delete;

  const std::string& name() const { return name_; }
  // After parameters are declared, before they are loaded: the strategy plans placement. Then installs the
  // block hooks on the session and the grad_ready hook on every trainable parameter.
  void setup();
  void before_block(int block, rt::BlockPhase phase) override;
  void after_block(int block, rt::BlockPhase phase) override;
  void before_step();
  void after_step();
  // ABI 1.1: whether the strategy shards the optimizer (it has param_owner), and the owner of a trainable
  // parameter (-1: every rank).
  bool shards_optimizer() const;
  int param_owner(rt::Param& p);
  // ABI 1.1 data_parallel: this rank's data-parallel group and the number of groups (left as they are, rank
  // and world, when the strategy has no such entry). Checked: 0 <= dp_rank < dp_size, world % dp_size == 0.
  void data_parallel(int& dp_rank, int& dp_size);
  // ABI 1.1 pipeline: this rank's stage (checked against the model), or none (no entry, or one stage).
  std::optional<eng_pipeline_stage> pipeline(const eng_model_info& model);
  // ABI 1.1 place_layers: each block's and parameter's device (checked), or none (no entry, or one device).
  // available: the devices the engine can drive (0: simulated CPU devices, any number).
  std::optional<LayerMap> place_layers(const eng_model_info& model, int available, int64_t device_bytes);

  const eng_parallel_vtable& vtable() const { return *vt_; }
  void* self() const { return self_; }

 private:
  void check(eng_status st, const char* call);

  HostSession* session_;
  const eng_parallel_vtable* vt_;
  std::string name_;
  void* self_ = nullptr;
};

}  // namespace engine::host
