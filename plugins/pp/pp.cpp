// pp: pipeline parallelism over groups of parallel.pp_size ranks (all of them by default): rank s of a group
// is stage s and runs consecutive decoder blocks; the engine sends each micro-batch's activations from stage to
// stage and their gradients back, in a 1F1B schedule (or GPipe's), and computes the loss on the last stage.
//
// Stages (pipeline entry, ABI 1.1): `stages` gives the blocks of each stage; by default they are cut so that the
// stages' parameter memory (weights, and for trainable ones their gradient and AdamW's two moments) is as even as
// a contiguous cut allows, the embedding counted on the first stage and the final norm and lm_head on the last.
//
// Placement (param_set_holder): every parameter is kept by the one stage that uses it: a block's parameters by
// the block's stage, the embedding by the first, the final norm and lm_head by the last, a PEFT adapter by the
// stage of the projection it adapts (the parameter whose module name its name contains, after a dot). A tied embedding (the
// lm_head of a model with tie_word_embeddings) is used by the first and the last stage: it stays on every rank
// of the group, the engine gives it a zero gradient where it was not used, and before_step sums its gradient
// over the group, so every copy steps alike.
//
// Data and the mesh: pp_size consecutive ranks form one pipeline; world / pp_size pipelines are data-parallel
// replicas (data_parallel: they train on different rows; before_step sums every gradient over the replicas).
//
// Not done here (docs/distributed.md, "pp"): interleaved (virtual) stages, quantized (nf4) bases, composing
// with tp or a sharding strategy.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "engine/cpp/parallel.hpp"
#include "plugins/common/block_placement.hpp"
#include "plugins/common/grad_buckets.hpp"
#include "plugins/common/strategy_options.hpp"

namespace {

using engine::sdk::Host;
using engine::sdk::Param;
using engine::sdk::ParamInfo;

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "pp_size": {"type": "integer", "default": 0, "minimum": 0, "description": "stages of one pipeline (consecutive ranks); the job's world size must be a multiple: world / pp_size pipelines train as data-parallel replicas. 0: every rank of the job"},
  "stages": {"type": "array", "items": {"type": "integer", "minimum": 1}, "description": "decoder blocks of each stage, first to last (one entry per stage, summing to the model's layers); absent: cut by parameter memory"},
  "schedule": {"type": "string", "enum": ["1f1b", "gpipe"], "default": "1f1b", "description": "1f1b: each stage starts a micro-batch's backward as soon as it can (at most stages - stage micro-batches in flight); gpipe: every forward before any backward (all micro-batches' activations held)"},
  "bucket_mb": {"type": "number", "default": 25, "minimum": 0, "description": "gradients summed over the ranks (replicated parameters, data-parallel replicas) in buckets of at most this many MiB"}
}})json";

std::string str(int64_t v) { return std::to_string(v); }

class Pp : public engine::sdk::Parallel {
 public:
  Pp(Host&, const std::string& options_json) {
    namespace common = engine::plugins_common;
    const engine::sdk::Json o =
        common::parse_strategy_options("pp", options_json, {"pp_size", "stages", "schedule", "bucket_mb"});
    const double size = o.get("pp_size", 0.0);
    if (!(size >= 0) || size != static_cast<double>(static_cast<int64_t>(size)))
      throw engine::sdk::Error("pp: pp_size must be a whole number >= 0 (0: every rank), got " + std::to_string(size));
    pp_size_ = static_cast<int64_t>(size);
    if (o.contains("stages")) {
      for (const engine::sdk::Json& v : o["stages"].items()) {
        const int64_t n = v.as_int();
        if (n < 1) throw engine::sdk::Error("pp: every entry of stages must be >= 1 block, got " + str(n));
        stages_.push_back(n);
      }
      if (stages_.empty()) throw engine::sdk::Error("pp: stages is empty; give the blocks of each stage, or leave it out");
    }
    schedule_ = o.contains("schedule") ? o["schedule"].as_string() : std::string("1f1b");
    if (schedule_ != "1f1b" && schedule_ != "gpipe")
      throw engine::sdk::Error("pp: schedule = '" + schedule_ + "'; use 1f1b or gpipe");
    bucket_bytes_ = common::bucket_bytes_option("pp", o);
  }

  // The mesh: groups of pp consecutive ranks form one pipeline; world / pp such pipelines are data-parallel.
  void data_parallel(Host& host, int32_t* dp_rank, int32_t* dp_size) override {
    const int64_t world = host.world_size(), pp = pp_size_ == 0 ? world : pp_size_;
    if (world % pp != 0)
      throw engine::sdk::Error("pp: pp_size = " + str(pp_size_) + " does not divide the job's " + str(world) +
                                   " ranks; use a pp_size that divides the world size (world / pp_size "
                                   "data-parallel pipelines), or 0 for all of them",
                               ENG_ERR_INVALID_ARGUMENT);
    pp_ = pp;
    *dp_rank = static_cast<int32_t>(host.rank() / pp);
    *dp_size = static_cast<int32_t>(world / pp);
  }

  void setup(Host& host) override {
    if (pp_ == 0) pp_ = pp_size_ == 0 ? host.world_size() : pp_size_;
    if (!stages_.empty() && static_cast<int64_t>(stages_.size()) != pp_)
      throw engine::sdk::Error("pp: stages lists " + str(static_cast<int64_t>(stages_.size())) +
                                   " stages for a pipeline of " + str(pp_) + " ranks; give one entry per stage",
                               ENG_ERR_INVALID_ARGUMENT);
  }

  eng_pipeline_stage pipeline(Host& host, const eng_model_info& model) override {
    const int64_t layers = model.n_layers, stage = host.rank() % pp_;
    if (layers < pp_)
      throw engine::sdk::Error("pp: a pipeline of " + str(pp_) + " stages needs at least as many decoder blocks; the "
                                   "model has " + str(layers) + ": use pp_size <= " + str(layers),
                               ENG_ERR_INVALID_ARGUMENT);
    namespace common = engine::plugins_common;
    const common::BlockParams bp(host, model);
    const std::vector<Param>& params = bp.params;
    const std::vector<ParamInfo>& infos = bp.infos;
    const std::vector<int32_t>& block = bp.block;

    // The stages' blocks.
    std::vector<int64_t> counts = stages_;
    if (counts.empty()) {
      std::vector<int64_t> cost;
      int64_t head = 0, tail = 0;
      bp.costs(layers, cost, head, tail);
      counts = common::balanced_cut(cost, pp_, head, tail);
    }
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    if (total != layers)
      throw engine::sdk::Error("pp: stages add up to " + str(total) + " blocks, the model has " + str(layers) +
                                   "; make them sum to " + str(layers),
                               ENG_ERR_INVALID_ARGUMENT);
    std::vector<int64_t> first(static_cast<size_t>(pp_) + 1, 0);
    for (int64_t s = 0; s < pp_; ++s) first[static_cast<size_t>(s + 1)] = first[static_cast<size_t>(s)] + counts[static_cast<size_t>(s)];
    auto stage_of_block = [&](int32_t b) {
      int64_t s = 0;
      while (first[static_cast<size_t>(s + 1)] <= b) ++s;
      return s;
    };

    int64_t held = 0, replicated = 0;
    for (size_t i = 0; i < infos.size(); ++i) {
      if ((infos[i].flags & ENG_PARAM_TIED) != 0) continue;
      if ((infos[i].flags & ENG_PARAM_QUANTIZED) != 0)
        throw engine::sdk::Error("pp: parameter " + infos[i].name +
                                     " is quantized; placing quantized base weights on pipeline stages is not "
                                     "implemented (pp lacks ENG_PAR_CAP_QUANTIZED): drop [quantizer] or use ddp",
                                 ENG_ERR_UNSUPPORTED);
      int64_t s = 0;
      if (block[i] >= 0) {
        if (block[i] >= layers)
          throw engine::sdk::Error("pp: parameter " + infos[i].name + " belongs to block " + str(block[i]) +
                                       " of a model with " + str(layers) + " blocks",
                                   ENG_ERR_INTERNAL);
        s = stage_of_block(block[i]);
      } else {
        if (block[i] == common::BlockParams::kBoth) {  // a tied embedding: on every stage
          ++replicated;
          continue;
        }
        s = block[i] == common::BlockParams::kFirst ? 0 : pp_ - 1;
      }
      host.param_set_holder(params[i], static_cast<int32_t>(s));
      ++held;
    }

    eng_pipeline_stage out{};
    out.stages = static_cast<int32_t>(pp_);
    out.stage = static_cast<int32_t>(stage);
    out.first_block = static_cast<int32_t>(first[static_cast<size_t>(stage)]);
    out.last_block = static_cast<int32_t>(first[static_cast<size_t>(stage + 1)]);
    out.warmup = schedule_ == "gpipe" ? std::numeric_limits<int32_t>::max() : static_cast<int32_t>(pp_ - 1 - stage);
    if (host.rank() == 0) {
      std::string cut;
      for (int64_t s = 0; s < pp_; ++s)
        cut += (s ? ", " : "") + std::string("[") + str(first[static_cast<size_t>(s)]) + ", " +
               str(first[static_cast<size_t>(s + 1)]) + ")";
      host.info("pp: " + str(pp_) + " stages (" + schedule_ + ") over blocks " + cut + "; " + str(held) +
                " parameters kept by one stage, " + str(replicated) + " on every stage" +
                (host.world_size() > pp_ ? "; " + str(host.world_size() / pp_) + " data-parallel pipelines" : ""));
    }
    return out;
  }

  // A parameter every stage keeps (a tied embedding) got its gradients on the first and the last stage: summed
  // over the pipeline so every copy steps alike. In a mesh every gradient is then summed over the replicas.
  void before_step(Host& host) override {
    namespace common = engine::plugins_common;
    common::sum_grads_over_ranks(
        host, bucket_bytes_, [](const ParamInfo& info) { return (info.flags & ENG_PARAM_HELD) == 0; },
        ENG_GROUP_MODEL);
    if (pp_ < host.world_size())
      common::sum_grads_over_ranks(host, bucket_bytes_, [](const ParamInfo&) { return true; }, ENG_GROUP_DATA);
  }

 private:
  int64_t pp_size_ = 0;
  int64_t pp_ = 0;  // resolved: the ranks of one pipeline
  std::vector<int64_t> stages_;
  std::string schedule_;
  int64_t bucket_bytes_ = 0;
};

}  // namespace

ENGINE_REGISTER_PARALLEL(Pp, "pp", "0.1.0",
                         "pipeline parallelism: consecutive blocks per rank, micro-batches in a 1F1B schedule",
                         kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA)
