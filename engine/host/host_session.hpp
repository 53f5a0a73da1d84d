// HostSession: the engine side of every eng_ctx (ctx->host_data points at it). It holds what the host table's
// entries act on: the device, the autograd tape, the parameter store, the run's generator, the error slot,
// registered custom ops, device allocations, and the run's quantizer, PEFT method, block hooks (the parallel
// strategy) and communicator, which the session layer plugs in.
//
// Wiring a run (engine/session does this; tests/unit/host/*_test.cpp do the same by hand):
//   HostSession hs(device, seed, rank, world, local_rank);  // LocalCommunicator until set_communicator()
//   const eng_host_api* host = host_api();                  // handed to every plugin at negotiate/create
//   eng_ctx ctx = hs.context();
//   model:      vt->create(host, &ctx, config_json, options, &m);
//               hs.set_declaring(true); vt->declare_params(m, &ctx); hs.set_declaring(false);
//   PEFT:       PluginPeft peft(hs, host, peft_vt, "lora", options); peft.attach(); hs.set_peft(&peft);
//   quantizer:  PluginQuantizer q(hs, host, quant_vt, "nf4", options);
//               hs.params().assign_quantizer(q); hs.set_quantizer(&q);
//   parallel:   PluginParallel par(hs, host, par_vt, "ddp", options);
//               par.setup();  // installs the block hooks
//   weights:    rt::load_params(hs.params(), names, reader); hs.params().materialize_all();
//   optimizer:  for each trainable root parameter p: opt_vt->add_param(self, &ctx, param_handle(p), &group);
//   hs.tape().set_checkpointing(recipe train.activation_checkpointing);
//   step:       per micro-batch: vt->forward(m, &ctx, &batch, &hidden);
//               ops->linear_cross_entropy(...) -> loss;
//               hs.tape().backward(tensor_of(loss, "loss"));  // grads accumulate in the parameter store
//               then par.before_step(); opt_vt->step(...); par.after_step(); hs.params().zero_grads();
//   evaluation/generation: hs.context(false) (nothing is recorded);
//               KV caches cross as kv_cache_handle(cache).
// The Plugin* wrappers (plugin_quantizer.hpp, plugin_peft.hpp, plugin_parallel.hpp) unplug themselves from
// the session when destroyed (PluginQuantizer frees its states first), so they may be created after the
// session. Other implementations of the interfaces must be unplugged (set_*(nullptr)) before they die; a
// quantizer used by the parameter store must outlive the store or call params().release_quantizer(*this)
// when it dies.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/abi/engine.h"
#include "engine/runtime/autograd.hpp"
#include "engine/runtime/communicator.hpp"
#include "engine/runtime/param_store.hpp"
#include "engine/runtime/peft.hpp"
#include "engine/runtime/quantizer.hpp"
#include "engine/runtime/rng.hpp"

namespace engine::host {

// A registered custom op: the plugin's table entry with its name owned here.
struct CustomOpDef {
  std::string name;
  eng_custom_op op{};  // op.name points into `name`
};

class HostSession {
 public:
  // rank/world_size/local_rank are copied into every context; seed drives the generator and parameter init.
  HostSession(rt::Device& device, uint64_t seed, int rank = 0, int world_size = 1, int local_rank = 0);
  ~HostSession();
  HostSession(const HostSession&) = delete;
  HostSession& operator=(const HostSession&) = delete;

  // The device new tensors go to and contexts name: the run's, or the one use_device() made current.
  rt::Device& device() const { return current_device_ != nullptr ? *current_device_ : *device_; }
  // The run's device (device_alloc's, the parameter store's default), whatever is current.
  rt::Device& run_device() const { return *device_; }
  // Layer placement: tensors the plugins create go to `d` (a block's device while its blocks run) until
  // use_device(nullptr) brings back the run's device. `d` must outlive its use.
  void use_device(rt::Device* d) { current_device_ = d == device_ ? nullptr : d; }
  // The tape ops record on: the session's own, or the one use_tape() made current.
  rt::Tape& tape() { return *active_tape_; }
  // Pipeline parallelism: ops record on `t` (one tape per micro-batch in flight) until use_tape(nullptr)
  // brings back the session's own. `t` must outlive its use.
  void use_tape(rt::Tape* t) { active_tape_ = t != nullptr ? t : &tape_; }
  rt::Tape& own_tape() { return tape_; }
  rt::ParamStore& params() { return *params_; }
  rt::Rng& rng() { return rng_; }

  // A context for calls into plugins (grad_enabled: ops record on the tape).
  eng_ctx context(bool grad_enabled = true);

  // The run's plug-ins (nullptr: none). Not owned.
  void set_quantizer(rt::Quantizer* q) { quantizer_ = q; }
  rt::Quantizer* quantizer() const { return quantizer_; }
  void set_peft(rt::Peft* p) { peft_ = p; }
  rt::Peft* peft() const { return peft_; }
  // The parallel strategy's block hooks: called by block_begin/block_end (forward) and by the tape
  // (backward).
  void set_block_hooks(rt::BlockHooks* hooks);
  rt::BlockHooks* block_hooks() const { return hooks_; }
  void set_communicator(rt::Communicator* comm);  // nullptr: back to the local (world_size 1) one
  rt::Communicator& communicator() { return *comm_; }
  // A tensor x data parallel mesh (the strategy's data_parallel): the ranks of this rank's data-parallel group
  // (they hold the parts of one model: the tensor-parallel collectives and splits) and the ranks that hold the
  // same part in every group (the data-parallel gradient sum). Both are the whole communicator without a mesh.
  void set_groups(rt::Communicator* model, rt::Communicator* data);
  rt::Communicator& model_communicator() { return model_comm_ != nullptr ? *model_comm_ : *comm_; }
  rt::Communicator& data_communicator() { return data_comm_ != nullptr ? *data_comm_ : *comm_; }

  // While declaring, block_begin/block_end only set the block recorded with declared parameters (no tape
  // segment, no hooks).
  void set_declaring(bool on);
  bool declaring() const { return declaring_; }
  int declaration_block() const { return declaration_block_; }
  // The block seam (the host table's block_begin/block_end).
  void block_begin(int block);
  void block_end(int block);

  // Tensor parallelism: the linear seam's last tp_copy (its input and output), so that projections sharing
  // one input (q, k, v; gate, up) share one tp_copy and their gradients one all-reduce. Cleared at every block
  // boundary.
  struct TpCopyMemo {
    rt::Tensor in, out;
    bool grad = false;
  };
  TpCopyMemo& tp_copy_memo() { return tp_copy_memo_; }
  // The host copy of the batch's token ids the engine uploaded (tensor parallelism's embedding reads the ids
  // on the host; with this it need not copy them back from the device). Set around the model's forward.
  void set_host_ids(const rt::Tensor& ids, const std::vector<int32_t>* host) {
    host_ids_tensor_ = host != nullptr ? ids : rt::Tensor();
    host_ids_ = host;
  }
  const std::vector<int32_t>* host_ids_of(const rt::Tensor& ids) const {
    return host_ids_ != nullptr && host_ids_tensor_.defined() && host_ids_tensor_.impl() == ids.impl() ? host_ids_
                                                                                                       : nullptr;
  }

  // Runs a node through the tape; with grad_enabled false nothing is recorded.
  std::vector<rt::Tensor> apply(bool grad_enabled, std::unique_ptr<rt::Node> node,
                                std::vector<rt::Tensor> inputs);
  rt::Tensor apply1(bool grad_enabled, std::unique_ptr<rt::Node> node, std::vector<rt::Tensor> inputs);

  // The error slot of contexts pointing at this session.
  void set_error(eng_status code, std::string message);
  const char* error() const { return error_.c_str(); }
  eng_status error_status() const { return error_status_; }
  void clear_error();

  // Custom ops (ids start at 1).
  eng_op_id register_op(const eng_custom_op& op);
  const CustomOpDef& custom_op(eng_op_id id) const;

  // Memory on the session's device for plugins, through the device allocator.
  void* device_alloc(size_t bytes);
  void device_free(void* ptr);

 private:
  TpCopyMemo tp_copy_memo_;
  rt::Tensor host_ids_tensor_;
  const std::vector<int32_t>* host_ids_ = nullptr;
  rt::Device* device_;
  rt::Device* current_device_ = nullptr;
  int rank_, world_size_, local_rank_;
  rt::Tape tape_;
  rt::Tape* active_tape_ = &tape_;
  std::unique_ptr<rt::ParamStore> params_;
  rt::Rng rng_;
  rt::Quantizer* quantizer_ = nullptr;
  rt::Peft* peft_ = nullptr;
  rt::BlockHooks* hooks_ = nullptr;
  rt::LocalCommunicator local_comm_;
  rt::Communicator* comm_ = &local_comm_;
  rt::Communicator* model_comm_ = nullptr;
  rt::Communicator* data_comm_ = nullptr;
  bool declaring_ = false;
  int declaration_block_ = -1;
  std::string error_;
  eng_status error_status_ = ENG_OK;
  std::vector<std::unique_ptr<CustomOpDef>> custom_ops_;
  std::unordered_map<void*, size_t> allocations_;
};

// The session behind a context; throws engine::Error when ctx or its host_data is missing.
HostSession& session_of(const eng_ctx* ctx);

// Makes `d` the session's current device for a scope (layer placement), the run's again when it ends.
class DeviceScope {
 public:
  DeviceScope(HostSession& s, rt::Device* d) : s_(s) { s_.use_device(d); }
  ~DeviceScope() { s_.use_device(nullptr); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  HostSession& s_;
};

}  // namespace engine::host
