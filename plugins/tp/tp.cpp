// tp: tensor parallelism (Megatron-LM's) over groups of parallel.tp_size ranks (all of them by default): the
// ranks of a group train on the same batch and each keeps a 1/tp_size slice of every parameter the model
// declares splittable; several groups are data-parallel replicas (a tp x dp mesh).
//
// Placement (setup, ABI 1.1 param_set_split): a parameter the model (or the PEFT method) flags
//   ENG_PARAM_TP_COLUMN  is cut along dim 0 (output features: q, k, v, gate, up and their biases, in whole
//                        heads; LoRA's B of such a projection),
//   ENG_PARAM_TP_ROW     is cut along dim 1 (input features: o, down; LoRA's A of such a projection);
// everything else (embedding, norms, lm_head, row-parallel biases, the other LoRA matrix) is replicated. The
// engine's linear seam does what that placement implies: the input of a column-split projection goes through
// an op that is the identity forward and sums its gradient over the ranks backward, and the output of a
// row-split one is summed over the ranks (its bias added after the sum). Attention runs on the local heads.
//
// Gradients: a split parameter's gradient is its own slice's; a replicated one's is identical on every rank
// except where it was used on split activations (ENG_PARAM_TP_PARTIAL_GRAD: LoRA's A of a column-split base,
// B of a row-split one), whose per-rank gradients are partial sums: before_step adds them up over the ranks.
// The engine sums the squared gradient norm over ranks for the split parameters and counts replicated ones once.
//
// Data and the mesh: tp_size consecutive ranks form one tensor-parallel group (the whole job by default);
// data_parallel tells the engine that world / tp_size such groups are data-parallel replicas, so it hands the
// ranks of one group the same rows, counts each group's tokens and loss once, and forms the groups
// (ENG_GROUP_MODEL for the splits and the seam's collectives, ENG_GROUP_DATA across the replicas). before_step
// sums the partial gradients over the model group and, in a mesh, every gradient over the data group.
//
// Not done here (docs/distributed.md, "tp"): sequence parallelism, split quantized (nf4) bases, composing with
// a sharding strategy across the data-parallel groups (the replicas are ddp-like: whole optimizer state).
#include <string>

#include "engine/cpp/parallel.hpp"
#include "plugins/common/grad_buckets.hpp"
#include "plugins/common/strategy_options.hpp"

namespace {

using engine::sdk::Host;
using engine::sdk::Param;
using engine::sdk::ParamInfo;

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "tp_size": {"type": "integer", "default": 0, "minimum": 0, "description": "ranks of one tensor-parallel group (consecutive ranks); the job's world size must be a multiple: world / tp_size groups train as data-parallel replicas (a tp x dp mesh). 0: every rank of the job"},
  "bucket_mb": {"type": "number", "default": 25, "minimum": 0, "description": "the partial gradients of replicated adapters are summed over the ranks in buckets of at most this many MiB"}
}})json";

class Tp : public engine::sdk::Parallel {
 public:
  Tp(Host&, const std::string& options_json) {
    namespace common = engine::plugins_common;
    const engine::sdk::Json o = common::parse_strategy_options("tp", options_json, {"tp_size", "bucket_mb"});
    const double size = o.get("tp_size", 0.0);
    if (!(size >= 0) || size != static_cast<double>(static_cast<int64_t>(size)))
      throw engine::sdk::Error("tp: tp_size must be a whole number >= 0 (0: every rank), got " +
                               std::to_string(size));
    tp_size_ = static_cast<int64_t>(size);
    bucket_bytes_ = common::bucket_bytes_option("tp", o);
  }

  // The mesh: groups of tp consecutive ranks hold one model; world / tp such groups are data-parallel replicas.
  // The engine asks before setup, and forms the model and data groups from the answer.
  void data_parallel(Host& host, int32_t* dp_rank, int32_t* dp_size) override {
    const int64_t world = host.world_size(), tp = tp_size_ == 0 ? world : tp_size_;
    if (world % tp != 0)
      throw engine::sdk::Error("tp: tp_size = " + std::to_string(tp_size_) + " does not divide the job's " +
                                   std::to_string(world) + " ranks; use a tp_size that divides the world size "
                                   "(world / tp_size data-parallel groups), or 0 for all of them",
                               ENG_ERR_INVALID_ARGUMENT);
    tp_ = tp;
    *dp_rank = static_cast<int32_t>(host.rank() / tp);
    *dp_size = static_cast<int32_t>(world / tp);
  }

  void setup(Host& host) override {
    const int64_t world = host.world_size();
    if (tp_ == 0) tp_ = tp_size_ == 0 ? world : tp_size_;  // an engine that did not ask data_parallel
    int64_t split = 0, split_elems = 0, replicated_elems = 0;
    for (Param p : host.params()) {
      const ParamInfo info = host.info(p);
      if ((info.flags & ENG_PARAM_TIED) != 0) continue;
      const bool column = (info.flags & ENG_PARAM_TP_COLUMN) != 0, row = (info.flags & ENG_PARAM_TP_ROW) != 0;
      if (column && row)
        throw engine::sdk::Error("tp: parameter " + info.name +
                                     " is flagged both ENG_PARAM_TP_COLUMN and ENG_PARAM_TP_ROW; a plugin declares "
                                     "one way to split it",
                                 ENG_ERR_INVALID_ARGUMENT);
      if (!column && !row) {
        replicated_elems += info.numel();
        continue;
      }
      if ((info.flags & ENG_PARAM_QUANTIZED) != 0)
        throw engine::sdk::Error("tp: parameter " + info.name +
                                     " is quantized; splitting quantized base weights is not implemented (tp "
                                     "lacks ENG_PAR_CAP_QUANTIZED): drop [quantizer] or use ddp",
                                 ENG_ERR_UNSUPPORTED);
      host.param_set_split(p, column ? 0 : 1);
      ++split;
      split_elems += info.numel();
    }
    if (host.rank() == 0)
      host.info("tp: " + std::to_string(world) + " ranks" +
                (tp_ < world ? " as " + std::to_string(world / tp_) + " data-parallel groups of " + std::to_string(tp_)
                             : std::string()) +
                "; each keeps 1/" + std::to_string(tp_) + " of " + std::to_string(split) + " split parameters (" +
                std::to_string(split_elems) + " elements), " + std::to_string(replicated_elems) +
                " elements replicated");
  }

  // The replicated parameters used on split activations hold partial gradients on each rank: summed over the
  // tensor-parallel group. In a mesh, every gradient is then summed over the data-parallel replicas (ddp).
  void before_step(Host& host) override {
    namespace common = engine::plugins_common;
    common::sum_grads_over_ranks(
        host, bucket_bytes_, [](const ParamInfo& info) { return (info.flags & ENG_PARAM_TP_PARTIAL_GRAD) != 0; },
        ENG_GROUP_MODEL);
    if (tp_ < host.world_size())
      common::sum_grads_over_ranks(host, bucket_bytes_, [](const ParamInfo&) { return true; }, ENG_GROUP_DATA);
  }

 private:
  int64_t tp_size_ = 0;
  int64_t tp_ = 0;  // resolved: the ranks of one tensor-parallel group
  int64_t bucket_bytes_ = 0;
};

}  // namespace

ENGINE_REGISTER_PARALLEL(Tp, "tp", "0.1.0",
                         "tensor parallelism: projections split over the ranks (column/row, whole heads), "
                         "every rank on the same batch",
                         kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA)
