#include "engine/session/session.hpp"

#include <spdlog/spdlog.h>

#include <numeric>

#include <nlohmann/json.hpp>

#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"
#include "engine/runtime/device_select.hpp"
#include "engine/runtime/layer_devices.hpp"
#if ENGINE_HAVE_CUDA
#include "engine/runtime/devices/cuda/cuda_device.hpp"
#endif
#include "engine/io/safetensors_checkpoint.hpp"
#include "engine/session/checkpoint_reader.hpp"
#include "engine/session/model_writer.hpp"
#include "engine/session/trainable_coverage.hpp"

namespace engine::session {

namespace fs = std::filesystem;

rt::Device& device_for(const std::string& name) { return rt::device_from_spec(name); }

std::string model_options_json(const recipe::Recipe& recipe) {
  nlohmann::json o = nlohmann::json::object();
  const std::string& d = recipe.model.dtype;
  if (d == "bf16")
    o["dtype"] = "bfloat16";
  else if (d == "fp16")
    o["dtype"] = "float16";
  else if (d == "fp32")
    o["dtype"] = "float32";
  return o.dump();
}

TrainingSession::TrainingSession(const recipe::Recipe& recipe, const plugins::PluginRegistry& registry,
                                 rt::Device& device, rt::Communicator* comm, int local_rank)
    : recipe_(&recipe), registry_(&registry) {
  try {
    wire(recipe, registry, device, comm, local_rank);
  } catch (...) {
    release();
    throw;
  }
}

void TrainingSession::wire(const recipe::Recipe& recipe, const plugins::PluginRegistry& registry,
                           rt::Device& device, rt::Communicator* comm, int local_rank) {
  if (comm != nullptr) {
    rank_ = comm->rank();
    world_size_ = comm->world_size();
  }
  dp_rank_ = rank_;
  dp_size_ = world_size_;
#if ENGINE_HAVE_CUDA
  // train.dtype is the CUDA device's compute policy: bf16 (bf16 activations, fp32 accumulation) or fp32.
  if (device.type() == rt::DeviceType::CUDA)
    static_cast<rt::CudaDevice&>(device).set_compute_dtype(recipe.train.dtype == "bf16" ? ENG_BF16 : ENG_F32);
#endif
  if (recipe.train.dtype == "bf16" && device.type() == rt::DeviceType::CPU) {
    spdlog::warn(
        "train.dtype = \"bf16\": the CPU backend computes in fp32 (bf16 compute needs the CUDA backend)");
  }
  host_ = std::make_unique<host::HostSession>(device, static_cast<uint64_t>(recipe.train.seed), rank_,
                                              world_size_, local_rank);
  if (comm != nullptr) host_->set_communicator(comm);
  const std::string strategy = recipe.parallel.present() ? recipe.parallel.plugin
                               : world_size_ > 1         ? std::string("ddp")
                                                         : std::string();
  // "auto" is resolved by the trainer from the memory plan before the first step; until then nothing recomputes.
  host_->tape().set_checkpoint_blocks(recipe.train.checkpoint_auto ? 0 : recipe.train.checkpoint_blocks);
  if (recipe.train.offload_activations) {
    if (device.type() != rt::DeviceType::CUDA)
      fail_with(ENG_ERR_INVALID_ARGUMENT,
                "train.offload_activations = true, but this run trains on the CPU (train.device = \"{}\"), "
                "where host memory is the device's memory: set offload_activations = false, or train on a GPU",
                recipe.train.device);
    host_->tape().set_activation_offload(true);
    spdlog::info("train.offload_activations: checkpointed blocks keep their inputs in pinned host memory");
  }

  if (recipe.train.recompute_cheap_ops) {
    host_->tape().set_recompute_cheap_ops(true);
    spdlog::info("train.recompute_cheap_ops: blocks that keep their activations recompute their norms' and "
                 "SwiGLU's outputs in backward instead of keeping them");
  }

  if (recipe.train.keep_attention) {
    host_->tape().set_replay_memo(true);
    spdlog::info("train.keep_attention: checkpointed blocks keep their attention's output and statistics{}, so "
                 "their replay skips the attention forward",
                 recipe.train.offload_activations ? " in pinned host memory" : "");
  }

  if (!recipe.train.deterministic) {
    device.set_deterministic(false);  // refused with the reason where the device has no such kernels
    spdlog::info("train.deterministic = false: CUDA attention's backward may use cuDNN's non-deterministic "
                 "algorithm (losses vary in the last bits between runs; a resume is not bit-exact)");
  }

  ModelLoadOptions mo;
  mo.plugin = recipe.model.plugin;
  mo.options_json = model_options_json(recipe);
  mo.before_weights = [&](ModelInstance& instance) {
    if (recipe.peft.present()) {
      // The engine freezes the whole base before the PEFT plugin attaches: the plugin marks trainable only
      // what it declares, and explicitly any base module it wants trained (modules_to_save), which it must
      // then save (checked by save_weights and on resume).
      rt::ParamStore& store = host_->params();
      for (size_t i = 0; i < store.size(); ++i) {
        if (store.at(i).trainable()) store.set_trainable(store.at(i), false);
      }
      const plugins::PluginRecord& rec = registry.require(ENG_KIND_PEFT, recipe.peft.plugin);
      peft_ = std::make_unique<host::PluginPeft>(*host_, host::host_api(), rec.table<eng_peft_vtable>(),
                                                 rec.name, recipe.peft.options_json);
      peft_->attach();
      host_->set_peft(peft_.get());
    }
    if (recipe.quantizer.present()) {
      const plugins::PluginRecord& rec = registry.require(ENG_KIND_QUANTIZER, recipe.quantizer.plugin);
      quantizer_ =
          std::make_unique<host::PluginQuantizer>(*host_, host::host_api(), rec.table<eng_quantizer_vtable>(),
                                                  rec.name, recipe.quantizer.options_json);
      host_->params().assign_quantizer(*quantizer_);
      host_->set_quantizer(quantizer_.get());
    }
    if (!strategy.empty()) {
      const plugins::PluginRecord& rec = registry.require(ENG_KIND_PARALLEL, strategy);
      parallel_ = std::make_unique<host::PluginParallel>(
          *host_, host::host_api(), rec.table<eng_parallel_vtable>(), rec.name,
          recipe.parallel.present() ? recipe.parallel.options_json : std::string("{}"));
      const eng_parallel_vtable& vt = parallel_->vtable();
      if (vt.save_state != nullptr || vt.load_state != nullptr)
        fail("parallel plugin '{}' keeps state of its own (save_state/load_state), which this engine does not "
             "checkpoint yet; it is refused rather than resumed without that state",
             rec.name);
      // The data-parallel groups come first: in a tensor x data parallel mesh the splits are cut over the
      // model group (the ranks of one data-parallel group).
      parallel_->data_parallel(dp_rank_, dp_size_);
      if (dp_size_ > 1 && dp_size_ < world_size_) {
        const int per_group = world_size_ / dp_size_;
        model_group_ = comm->subgroup("model", dp_rank_);
        data_group_ = comm->subgroup("data", model_group_->rank());
        if (model_group_->world_size() != per_group || data_group_->world_size() != dp_size_)
          fail("parallel plugin '{}': its data-parallel groups are not {} groups of {} ranks (this rank's group has "
               "{} ranks)",
               rec.name, dp_size_, per_group, model_group_->world_size());
        host_->set_groups(model_group_.get(), data_group_.get());
        spdlog::info("rank {}: rank {} of model group {} ({} ranks), rank {} of data group {} ({} ranks)", rank_,
                     model_group_->rank(), dp_rank_, per_group, data_group_->rank(), model_group_->rank(), dp_size_);
      }
      parallel_->setup();
      if (std::optional<eng_pipeline_stage> st = parallel_->pipeline(instance.info())) wire_pipeline(*st, instance, comm, rec.name);
      if (std::optional<host::LayerMap> lm = parallel_->place_layers(
              instance.info(), rt::layer_devices_available(device), static_cast<int64_t>(device.total_memory())))
        wire_layers(*lm, instance, device, rec.name);
      if (host_->params().any_split()) {
        // Tensor parallelism: each rank computes whole heads of attention (q, k and v are split in heads).
        const int parts = model_parallel_size();
        const eng_model_info mi = instance.info();
        if (mi.n_heads % parts != 0 || mi.n_kv_heads % parts != 0)
          fail_with(ENG_ERR_INVALID_ARGUMENT,
                    "parallel strategy '{}' splits attention over {} ranks, but the model has {} attention heads and "
                    "{} key/value heads: each rank needs whole heads, so the tensor-parallel size must divide both "
                    "(use {} ranks per group)",
                    rec.name, parts, mi.n_heads, mi.n_kv_heads, std::gcd(mi.n_heads, mi.n_kv_heads));
      }
    }
  };
  model_ = load_model(*host_, registry, recipe.model.path, mo);
  if (recipe.train.offload_kept_blocks > 0) {
    if (device.type() != rt::DeviceType::CUDA)
      fail_with(ENG_ERR_INVALID_ARGUMENT,
                "train.offload_kept_blocks = {}, but this run trains on the CPU (train.device = \"{}\"), where "
                "host memory is the device's memory: remove the key, or train on a GPU",
                recipe.train.offload_kept_blocks, recipe.train.device);
    host_->tape().set_offload_kept_blocks(recipe.train.offload_kept_blocks, model_->info().n_layers);
    spdlog::info("train.offload_kept_blocks: the first {} blocks that keep their activations hold them in pinned "
                 "host memory between their forward and their backward",
                 recipe.train.offload_kept_blocks);
  }
  host_->params().materialize_all();
  host_->params().apply_placement();  // zero3: every rank keeps its shards, the full values are released
  if (parallel_ && world_size_ > 1 && !registry.require(ENG_KIND_PARALLEL, strategy).has(ENG_PAR_CAP_SHARDS_PARAMS)) {
    // Replicas start from rank 0's trainable values (they agree already when every rank loads the same
    // files with the same seed; this makes it so whatever the initialisation).
    rt::ParamStore& ps = host_->params();
    for (size_t i = 0; i < ps.size(); ++i) {
      rt::Param& p = ps.at(i);
      if (p.root == &p && p.trainable() && !p.split() && !p.held_by_one())  // slices, stages differ per rank
        comm->broadcast(ps.value(p), 0);
    }
  }

  const plugins::PluginRecord& opt = registry.require(ENG_KIND_OPTIMIZER, recipe.optimizer.plugin);
  optimizer_ = std::make_unique<OptimizerInstance>(*host_, opt, recipe.optimizer.options_json);
  rt::ParamStore& store = host_->params();
  for (size_t i = 0; i < store.size(); ++i) {
    rt::Param& p = store.at(i);
    if (p.tied() || !p.trainable()) continue;
    const bool no_decay = (p.decl.flags & ENG_PARAM_NO_DECAY) != 0 || p.decl.role == ENG_ROLE_BIAS ||
                          p.decl.role == ENG_ROLE_NORM;
    trainable_.push_back(&p);
    // A strategy that shards the optimizer (zero2) names each parameter's owner: only it steps the parameter.
    const int owner = parallel_ ? parallel_->param_owner(p) : -1;
    if (owner < 0 && parallel_ && parallel_->shards_optimizer()) replicated_.insert(&p);
    if ((owner >= 0 && owner != rank_) || p.held_elsewhere()) {  // zero2: another rank's; pp: another stage's
      not_owned_.push_back(&p);
      continue;
    }
    optimizer_->add_param(p, no_decay ? 0.0 : recipe.optimizer.weight_decay);
  }
  if (trainable_.empty()) fail("the run has no trainable parameter: check [peft] target_modules");
  spdlog::info("model {} ({} parameters, {} trainable{}), optimizer {}", recipe.model.path.string(),
               store.numel(), store.numel(true),
               peft_ ? ", " + peft_->name() + " adapters" : ", full fine-tuning", optimizer_->name());
}

void TrainingSession::wire_pipeline(const eng_pipeline_stage& st, const ModelInstance& model, rt::Communicator* comm,
                                    const std::string& strategy) {
  rt::Communicator& group = host_->model_communicator();
  if (st.stages != group.world_size() || st.stage != group.rank())
    fail("parallel plugin '{}': pipeline gave stage {} of {}, but this rank is rank {} of a model group of {} ranks "
         "(the stages are the model group's ranks in order)",
         strategy, st.stage, st.stages, group.rank(), group.world_size());
  if (!model.has_forward_blocks())
    fail_with(ENG_ERR_UNSUPPORTED,
              "parallel strategy '{}' cuts the model into pipeline stages, but model plugin '{}' has no forward_blocks "
              "entry (ABI 1.1); use a strategy other than pp for this model",
              strategy, model.plugin_name());
  if (splits_params() || shards_params())
    fail_with(ENG_ERR_UNSUPPORTED, "parallel plugin '{}' both pipelines and splits or shards parameters", strategy);
  // The neighbours' two-rank groups: links (0,1), (2,3), ... and (1,2), (3,4), ...; every rank of the job
  // joins both calls (a stage without a partner in one is a group of its own).
  const int S = st.stages, s = st.stage, base = dp_rank_ * S;
  even_link_ = comm->subgroup("pipeline-even", base + s / 2);
  odd_link_ = comm->subgroup("pipeline-odd", base + (s + 1) / 2);
  pipeline_.emplace();
  pipeline_->stage = st;
  if (s > 0) pipeline_->prev = ((s - 1) % 2 == 0 ? even_link_ : odd_link_).get();
  if (s + 1 < S) pipeline_->next = (s % 2 == 0 ? even_link_ : odd_link_).get();
  for (rt::Communicator* link : {pipeline_->prev, pipeline_->next})
    if (link != nullptr && link->world_size() != 2)
      fail("pipeline stage {}: the link to a neighbour has {} ranks, not 2", s, link->world_size());
  spdlog::info("rank {}: pipeline stage {} of {}, blocks [{}, {})", rank_, s, S, st.first_block, st.last_block);
}

void TrainingSession::wire_layers(const host::LayerMap& map, ModelInstance& model, rt::Device& device,
                                  const std::string& strategy) {
  if (pipeline_ || splits_params() || shards_params() || holds_params())
    fail_with(ENG_ERR_UNSUPPORTED,
              "parallel plugin '{}' places layers on devices and also pipelines, splits or shards parameters", strategy);
  if (world_size_ > 1)
    fail_with(ENG_ERR_UNSUPPORTED,
              "parallel plugin '{}' places the model's layers on the devices of one process, but this job has {} "
              "processes; run it without --nproc-per-node (or use pp, ddp or fsdp across processes)",
              strategy, world_size_);
  if (!model.has_forward_blocks())
    fail_with(ENG_ERR_UNSUPPORTED,
              "parallel strategy '{}' places blocks on several devices, but model plugin '{}' has no forward_blocks "
              "entry (ABI 1.1); train this model on one device",
              strategy, model.plugin_name());
  rt::ParamStore& store = host_->params();
  for (size_t i = 0; i < store.size(); ++i)
    if (store.at(i).quantized())
      fail_with(ENG_ERR_UNSUPPORTED,
                "parallel strategy '{}' places layers on {} devices, but parameter {} is quantized ([quantizer]): "
                "placing quantized base weights on several devices is not implemented; drop [quantizer], or use "
                "one device",
                strategy, map.devices, store.at(i).name());
  Layers l;
  l.devices = rt::layer_devices(device, map.devices);
  for (size_t i = 0; i < store.size(); ++i) {
    rt::Param& p = store.at(i);
    if (p.root == &p) store.set_device(p, *l.devices[static_cast<size_t>(map.param_device[i])]);
  }
  for (size_t b = 0; b < map.block_device.size(); ++b) {
    rt::Device* d = l.devices[static_cast<size_t>(map.block_device[b])];
    if (l.segments.empty() || l.segments.back().device != d)
      l.segments.push_back(Layers::Segment{static_cast<int>(b), static_cast<int>(b), d});
    l.segments.back().last = static_cast<int>(b) + 1;
  }
  l.head = &store.device_of(model.lm_head());
  std::string where;
  for (const Layers::Segment& s : l.segments)
    where += fmt::format("{}[{}, {}) on {}:{}", where.empty() ? "" : ", ", s.first, s.last,
                         rt::device_type_name(s.device->type()), s.device->index());
  spdlog::info("layers: {} devices{}: blocks {}; the loss on {}:{}", map.devices,
               device.type() == rt::DeviceType::CPU ? " (simulated CPU devices)" : "", where,
               rt::device_type_name(l.head->type()), l.head->index());
  layers_ = std::move(l);
}

TrainingSession::~TrainingSession() { release(); }

void TrainingSession::release() noexcept {
  optimizer_.reset();
  parallel_.reset();
  model_.reset();
  // The quantizer and PEFT wrappers detach from the HostSession in their destructors (the quantizer frees
  // its states out of the parameter store), so they go while it is alive.
  quantizer_.reset();
  peft_.reset();
  host_.reset();
}

void TrainingSession::save_weights(const fs::path& dir) {
  fs::create_directories(dir);
  if (peft_) {
    eng_ctx ctx = host_->context(false);
    eng_status s = peft_->vtable().save(peft_->self(), &ctx, dir.c_str(), recipe_->model.path.c_str());
    if (s != ENG_OK) {
      std::string m = host::host_api()->get_error(&ctx);
      host_->clear_error();
      throw Error(fmt::format("saving the {} adapter into {} failed: {}", peft_->name(), dir.string(), m), s);
    }
    check_weights_cover(trainable_names(), saved_weight_keys(dir),
                        fmt::format("the {} plugin's save into {}", peft_->name(), dir.string()));
    return;
  }
  write_model_safetensors(host_->params(), dir / "model.safetensors", ENG_F32);
  // Saving never misses a weight (zero3 gathers every shard into what is written): the file must hold
  // exactly the declared parameters that a model file carries.
  std::vector<std::string> declared;
  const rt::ParamStore& store = host_->params();
  for (size_t i = 0; i < store.size(); ++i) {
    const rt::Param& p = store.at(i);
    if (!p.tied() && !(p.decl.flags & ENG_PARAM_NOT_SAVED) && p.decl.role != ENG_ROLE_ADAPTER)
      declared.push_back(p.name());
  }
  check_weights_cover(declared, saved_weight_keys(dir), fmt::format("the model weights saved into {}", dir.string()));
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    const fs::path src = recipe_->model.path / f;
    if (fs::exists(src)) fs::copy_file(src, dir / f, fs::copy_options::overwrite_existing);
  }
}

std::vector<std::string> TrainingSession::trainable_names() const {
  std::vector<std::string> names;
  for (const rt::Param* p : trainable_) names.push_back(p->name());
  return names;
}

void TrainingSession::load_weights(const fs::path& dir) {
  if (places_params()) {
    // Every rank reads the whole (consolidated) weights into the gathered values and cuts its shard out of
    // them again: a checkpoint of any world size resumes on this one.
    pin_weights();
    load_weights_whole(dir);
    rt::ParamStore& store = host_->params();
    for (size_t i = 0; i < store.size(); ++i) store.refresh_local(store.at(i));
    unpin_weights();
    return;
  }
  load_weights_whole(dir);
}

void TrainingSession::load_weights_whole(const fs::path& dir) {
  if (peft_) {
    check_weights_cover(trainable_names(), saved_weight_keys(dir),
                        fmt::format("the {} adapter in {}", peft_->name(), dir.string()));
    eng_ctx ctx = host_->context(false);
    eng_status s = peft_->vtable().load(peft_->self(), &ctx, dir.c_str());
    if (s != ENG_OK) {
      std::string m = host::host_api()->get_error(&ctx);
      host_->clear_error();
      throw Error(fmt::format("loading the {} adapter from {} failed: {}", peft_->name(), dir.string(), m),
                  s);
    }
    return;
  }
  CheckpointLoadOptions o;
  o.tied_lm_head = model_->info().tie_word_embeddings != 0;
  load_checkpoint(host_->params(), io::SafetensorsCheckpoint::open(dir / "model.safetensors"), o);
}

void TrainingSession::pin_weights(bool all) {
  rt::ParamStore& store = host_->params();
  for (size_t i = 0; i < store.size(); ++i) {
    rt::Param& p = store.at(i);
    if (p.root == &p && (p.sharded() || p.split() || p.held_by_one()) && (all || full_finetune() || p.trainable()))
      store.gather(p);
  }
  store.set_pinned(true);
}

void TrainingSession::unpin_weights() {
  rt::ParamStore& store = host_->params();
  store.set_pinned(false);
  for (size_t i = 0; i < store.size(); ++i)
    if (store.at(i).root == &store.at(i)) store.release(store.at(i));
}

}  // namespace engine::session
