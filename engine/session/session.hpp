// TrainingSession: one run wired from a validated Recipe: the device, the HostSession (tape, parameter store,
// generator), the model plugin with its weights, the quantizer and PEFT plugins, and the optimizer with every
// trainable parameter added to it. Full fine-tuning when the recipe has no [peft] section.
//
// Order of construction (each step needs the previous ones):
//   HostSession(device, train.seed) -> model plugin declares its parameters -> with [peft] the engine freezes
//   every base parameter and the PEFT plugin attaches (declares its trainable adapters) -> quantizer takes the frozen projections -> weights stream in -> everything
//   not loaded is initialised -> optimizer gets the trainable parameters (weight decay 0 for
//   ENG_PARAM_NO_DECAY ones).
// The plugin objects are members declared before the HostSession; the destructor destroys them before it
// (they detach from it), and the HostSession before their libraries are unloaded.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "engine/host/host_session.hpp"
#include "engine/host/plugin_parallel.hpp"
#include "engine/host/plugin_peft.hpp"
#include "engine/host/plugin_quantizer.hpp"
#include "engine/plugins/plugin_registry.hpp"
#include "engine/recipe/recipe.hpp"
#include "engine/runtime/device.hpp"
#include "engine/session/model_loader.hpp"
#include "engine/session/optimizer_instance.hpp"

namespace engine::session {

// The device a recipe's train.device names ("cpu", "cuda", "auto"); engine::Error when it is not in this
// build.
rt::Device& device_for(const std::string& name);

// The model plugin's [model] options for a recipe: the engine's dtype names (bf16, fp32, fp16) in the
// plugin's spelling ({"dtype": "bfloat16"}).
std::string model_options_json(const recipe::Recipe& recipe);

class TrainingSession {
 public:
  // `comm`: the run's communicator (nullptr: a single process). With a world size above 1 and no [parallel]
  // section the strategy is ddp. The parallel strategy is set up after PEFT and the quantizer attach, before
  // the weights load; after they load, rank 0's trainable values are broadcast unless the strategy shards
  // parameters (ENG_PAR_CAP_SHARDS_PARAMS), so every replica starts equal.
  TrainingSession(const recipe::Recipe& recipe, const plugins::PluginRegistry& registry, rt::Device& device,
                  rt::Communicator* comm = nullptr, int local_rank = 0);
  ~TrainingSession();
  TrainingSession(const TrainingSession&) = delete;
  TrainingSession& operator=(const TrainingSession&) = delete;

  const recipe::Recipe& recipe() const { return *recipe_; }
  host::HostSession& host() { return *host_; }
  ModelInstance& model() { return *model_; }
  host::PluginPeft* peft() { return peft_.get(); }
  host::PluginQuantizer* quantizer() { return quantizer_.get(); }
  OptimizerInstance& optimizer() { return *optimizer_; }
  // The parallel strategy (nullptr for a single process without [parallel]).
  host::PluginParallel* parallel() { return parallel_.get(); }
  int rank() const { return rank_; }
  // The strategy shards the optimizer (ABI 1.1 param_owner): this rank's optimizer steps only its own
  // parameters, and the trainable parameters of the other ranks are listed here (their gradients are freed
  // once reduced).
  bool shards_optimizer() const { return parallel_ && parallel_->shards_optimizer(); }
  const std::vector<rt::Param*>& not_owned() const { return not_owned_; }
  // The strategy keeps parameters as shards (zero3; ABI 1.1 param_set_local): values are gathered per block,
  // gradients reduce-scattered into local shards, the optimizer steps local shards.
  bool shards_params() const { return host_->params().any_sharded(); }
  // The strategy splits parameters (tp; ABI 1.1 param_set_split): each rank holds slices, the linear seam
  // sums over the ranks, checkpoints consolidate the slices.
  bool splits_params() const { return host_->params().any_split(); }
  // The strategy keeps parameters on one pipeline stage each (pp; ABI 1.1 param_set_holder).
  bool holds_params() const { return host_->params().any_held(); }
  // Any of them: checkpoints write one optimizer share per rank with its layout, weights are gathered to be
  // saved.
  bool places_params() const { return shards_params() || splits_params() || holds_params(); }
  // Pipeline parallelism (the strategy's pipeline entry, ABI 1.1): this rank's stage and the two-rank groups
  // to its neighbours (rank 0 of each is the lower stage); null without a pipeline.
  struct Pipeline {
    eng_pipeline_stage stage{};
    rt::Communicator* prev = nullptr;  // with stage - 1 (none on the first)
    rt::Communicator* next = nullptr;  // with stage + 1 (none on the last)
    bool first() const { return stage.stage == 0; }
    bool last() const { return stage.stage == stage.stages - 1; }
    // Kept between steps by the pipeline pass (engine/train/pipeline_pass.cpp): the activations' dtype agreed
    // with each neighbour (-1: not yet), and the tapes of micro-batches in flight (reused, empty between uses).
    mutable int sent_dtype = -1, received_dtype = -1;
    mutable std::vector<std::unique_ptr<rt::Tape>> tapes;
  };
  const Pipeline* pipeline() const { return pipeline_ ? &*pipeline_ : nullptr; }
  // Layer placement (the strategy's place_layers, ABI 1.1): this process's devices, the runs of consecutive
  // blocks each computes (their hidden states copied from one to the next, the gradients back), and the device
  // of the lm_head, where the loss is computed; null with one device.
  struct Layers {
    struct Segment {
      int first = 0, last = 0;  // blocks [first, last)
      rt::Device* device = nullptr;
    };
    std::vector<rt::Device*> devices;  // devices[0]: the run's
    std::vector<Segment> segments;     // in block order
    rt::Device* head = nullptr;
  };
  const Layers* layers() const { return layers_ ? &*layers_ : nullptr; }
  // Data parallelism (the strategy's data_parallel, ABI 1.1, asked before its setup; default: every rank its
  // own group; groups of several ranks but fewer than the world form a mesh with a model and a data group): this rank's
  // group, the number of groups, and the ranks per group (they train on the same rows, so a sum over the
  // ranks of the batch's tokens or loss counts each group model_parallel_size() times).
  int dp_rank() const { return dp_rank_; }
  int dp_size() const { return dp_size_; }
  int model_parallel_size() const { return world_size_ / dp_size_; }
  // Collective (every rank): the sharded parameters that the weights files hold (the trainable ones with
  // [peft], every one for full fine-tuning; all = true: every one) are gathered and pinned, so that rank 0
  // alone may save or evaluate without collectives; unpin_weights() releases them again.
  void pin_weights(bool all = false);
  void unpin_weights();
  // With a sharded optimizer: the strategy gave this parameter to every rank (param_owner -1), so its reduced
  // gradient is on every rank and counts once, not once per rank, in the gradient norm.
  // With split parameters (tp): the ones left whole have the same gradient on every rank, counted once too.
  bool replicated(const rt::Param& p) const {
    return replicated_.contains(&p) || (splits_params() && !p.split()) || (holds_params() && !p.held_by_one());
  }
  int world_size() const { return world_size_; }
  bool full_finetune() const { return peft_ == nullptr; }
  // Trainable root parameters in declaration order.
  const std::vector<rt::Param*>& trainable() const { return trainable_; }
  std::vector<std::string> trainable_names() const;

  // The trained weights into `dir`: the adapter in PEFT's format (adapter_config.json,
  // adapter_model.safetensors), or for full fine-tuning the whole model in Hugging Face layout (fp32
  // model.safetensors, config.json and the tokenizer files copied from the base model).
  void save_weights(const std::filesystem::path& dir);
  // With [peft], both refuse (naming the parameters) files that do not hold exactly the trainable parameters.
  // Reads what save_weights wrote back into the parameters.
  void load_weights(const std::filesystem::path& dir);

 private:
  void load_weights_whole(const std::filesystem::path& dir);
  void wire_pipeline(const eng_pipeline_stage& stage, const ModelInstance& model, rt::Communicator* comm,
                     const std::string& strategy);
  void wire_layers(const host::LayerMap& map, ModelInstance& model, rt::Device& device, const std::string& strategy);
  // The constructor's work; on a throw the constructor releases what was wired (below) before rethrowing.
  void wire(const recipe::Recipe& recipe, const plugins::PluginRegistry& registry, rt::Device& device,
            rt::Communicator* comm, int local_rank);
  // Destroys the members in the order they depend on each other (also when wire() threw part-way: left to
  // the implicit member order, the HostSession would go before the quantizer and PEFT wrappers that detach
  // from it, a use after free).
  void release() noexcept;

  const recipe::Recipe* recipe_;
  const plugins::PluginRegistry* registry_;
  std::unique_ptr<host::PluginQuantizer> quantizer_;
  std::unique_ptr<host::PluginPeft> peft_;
  std::unique_ptr<host::HostSession> host_;
  std::unique_ptr<host::PluginParallel> parallel_;  // reset before host_ (it unplugs its hooks from it)
  std::unique_ptr<ModelInstance> model_;
  std::unique_ptr<OptimizerInstance> optimizer_;
  std::vector<rt::Param*> trainable_;
  std::vector<rt::Param*> not_owned_;
  std::unordered_set<const rt::Param*> replicated_;
  int rank_ = 0;
  int world_size_ = 1;
  int dp_rank_ = 0;
  int dp_size_ = 1;
  std::unique_ptr<rt::Communicator> model_group_, data_group_;  // a tensor x data parallel mesh only
  std::unique_ptr<rt::Communicator> even_link_, odd_link_;      // a pipeline's neighbour pairs
  std::optional<Pipeline> pipeline_;
  std::optional<Layers> layers_;
};

}  // namespace engine::session
