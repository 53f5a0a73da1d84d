// Model loading (see model_loader.hpp).
#include "engine/session/model_loader.hpp"

#include <spdlog/spdlog.h>

#include <cstddef>
#include <utility>

#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"
#include "engine/host/tensor_handle.hpp"
#include "engine/io/safetensors_checkpoint.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "engine/session/checkpoint_reader.hpp"

namespace engine::session {

ModelInstance::ModelInstance(host::HostSession& session, const plugins::PluginRecord& plugin,
                             const std::string& hf_config_json, const std::string& options_json)
    : session_(&session), vt_(plugin.table<eng_model_vtable>()), plugin_name_(plugin.name) {
  if (plugin.kind != ENG_KIND_MODEL || vt_ == nullptr)
    fail("plugin '{}' is not a model plugin; it cannot load a Hugging Face model", plugin.name);
  const bool cuda = session.device().type() == rt::DeviceType::CUDA;
  if (!plugin.has(cuda ? ENG_CAP_DEVICE_CUDA : ENG_CAP_DEVICE_CPU)) {
    fail_with(ENG_ERR_UNSUPPORTED, "model plugin '{}' ({}) does not run on the {}", plugin.name,
              plugin.path.string(), cuda ? "CUDA backend" : "CPU backend");
  }
  eng_ctx ctx = session.context(false);
  session.clear_error();
  void* self = nullptr;
  eng_status s = vt_->create(host::host_api(), &ctx, hf_config_json.c_str(), options_json.c_str(), &self);
  if (s != ENG_OK) fail_call("could not create the model from config.json", s);
  self_ = PluginObject(self,
                       vt_->destroy);  // destroyed by the member even if the rest of this constructor throws

  eng_model_info raw{};
  raw.struct_size = sizeof(raw);
  s = vt_->info(self_.get(), &raw);
  if (s != ENG_OK) fail_call("info", s);
  info_.lm_head_param = raw.lm_head_param != nullptr ? raw.lm_head_param : "";
  info_.architecture = raw.architecture != nullptr ? raw.architecture : "";
  info_.raw = raw;
  info_.raw.lm_head_param = info_.lm_head_param.c_str();
  info_.raw.architecture = info_.architecture.c_str();

  session.set_declaring(true);
  s = vt_->declare_params(self_.get(), &ctx);
  session.set_declaring(false);
  if (s != ENG_OK) fail_call("declare_params", s);
  if (session.params().find(info_.lm_head_param) == nullptr) {
    fail_with(ENG_ERR_INTERNAL,
              "model plugin '{}' names '{}' as its output projection but did not declare it", plugin_name_,
              info_.lm_head_param);
  }
}

ModelInstance::~ModelInstance() = default;

void ModelInstance::fail_call(const char* what, eng_status status) const {
  std::string message = session_->error();
  if (message.empty()) message = fmt::format("{} failed ({})", what, status_name(status));
  throw Error(fmt::format("model plugin '{}': {}", plugin_name_, message), status);
}

rt::Param& ModelInstance::lm_head() const { return session_->params().get(info_.lm_head_param); }

rt::Tensor ModelInstance::forward(const rt::Tensor& input_ids, const rt::Tensor& position_ids,
                                  const rt::Tensor& segment_ids, rt::KvCache* cache, bool grad_enabled) {
  if (cache != nullptr && grad_enabled)
    fail("internal: a forward with a KV cache must run without gradients");
  return run_forward(input_ids, position_ids, segment_ids, cache, grad_enabled, nullptr, 0,
                     info_.raw.n_layers);
}

bool ModelInstance::has_forward_blocks() const noexcept {
  return vt_->struct_size >= offsetof(eng_model_vtable, forward_blocks) + sizeof(void*) &&
         vt_->forward_blocks != nullptr;
}

rt::Tensor ModelInstance::forward_blocks(const rt::Tensor& input_ids, const rt::Tensor& position_ids,
                                         const rt::Tensor& segment_ids, const rt::Tensor& input, int32_t first,
                                         int32_t last, bool grad_enabled) {
  if (!has_forward_blocks())
    fail_with(ENG_ERR_UNSUPPORTED,
              "model plugin '{}' has no forward_blocks entry (ABI 1.1): it cannot be cut into pipeline stages; "
              "use a strategy other than pp",
              plugin_name_);
  if (first < 0 || last <= first || last > info_.raw.n_layers)
    fail("internal: forward_blocks [{}, {}) of a model with {} blocks", first, last, info_.raw.n_layers);
  if ((first == 0) == input.defined())
    fail("internal: forward_blocks from block {} {} an input", first, first == 0 ? "takes no" : "needs");
  return run_forward(input_ids, position_ids, segment_ids, nullptr, grad_enabled, &input, first, last);
}

rt::Tensor ModelInstance::run_forward(const rt::Tensor& input_ids, const rt::Tensor& position_ids,
                                      const rt::Tensor& segment_ids, rt::KvCache* cache, bool grad_enabled,
                                      const rt::Tensor* input, int32_t first, int32_t last) {
  host::OwnedHandle ids(input_ids), pos(position_ids);
  host::OwnedHandle seg = segment_ids.defined() ? host::OwnedHandle(segment_ids) : host::OwnedHandle();
  eng_batch batch{};
  batch.struct_size = sizeof(batch);
  batch.input_ids = ids.get();
  batch.position_ids = pos.get();
  batch.segment_ids = seg.get();
  batch.kv_cache = cache != nullptr ? host::kv_cache_handle(*cache) : nullptr;
  eng_ctx ctx = session_->context(grad_enabled);
  session_->clear_error();
  host::OwnedHandle hidden;
  if (input == nullptr) {
    const eng_status s = vt_->forward(self_.get(), &ctx, &batch, hidden.out());
    if (s != ENG_OK) fail_call("forward", s);
    return host::tensor_of(hidden.get(), "the model's hidden states");
  }
  host::OwnedHandle in = input->defined() ? host::OwnedHandle(*input) : host::OwnedHandle();
  const eng_status s = vt_->forward_blocks(self_.get(), &ctx, &batch, in.get(), first, last, hidden.out());
  if (s != ENG_OK) fail_call("forward_blocks", s);
  return host::tensor_of(hidden.get(), "the stage's hidden states");
}

rt::Tensor ModelInstance::logits(const rt::Tensor& hidden) {
  // through the host's linear op, so a quantized or adapted lm_head resolves as in training
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  host::OwnedHandle x(hidden), out;
  eng_status s = host::op_table()->linear(&ctx, x.get(), host::param_handle(lm_head()), nullptr, out.out());
  if (s != ENG_OK) fail_call("lm_head", s);
  return host::tensor_of(out.get(), "logits");
}

rt::Tensor ModelInstance::loss(const rt::Tensor& hidden, const rt::Tensor& labels, double scale,
                               int64_t ignore_index) {
  const int64_t c = info_.raw.hidden_size;
  const int64_t n = hidden.numel() / c;
  if (hidden.dim(-1) != c || labels.numel() != n) {
    fail("loss: hidden {} and labels {} do not match (labels need one entry per position)",
         hidden.shape().str(), labels.shape().str());
  }
  eng_ctx ctx = session_->context(true);
  session_->clear_error();
  const int64_t flat_shape[2] = {n, c};
  const int64_t label_shape[1] = {n};
  host::OwnedHandle h(hidden), y(labels), flat, flat_y, out;
  eng_status s = host::op_table()->reshape(&ctx, h.get(), 2, flat_shape, flat.out());           // (N,C)
  if (s == ENG_OK) s = host::op_table()->reshape(&ctx, y.get(), 1, label_shape, flat_y.out());  // (N)
  if (s == ENG_OK) {
    s = host::op_table()->linear_cross_entropy(&ctx, flat.get(), host::param_handle(lm_head()), flat_y.get(),
                                               ignore_index, scale, out.out());
  }
  if (s != ENG_OK) fail_call("loss", s);
  return host::tensor_of(out.get(), "loss");
}

std::string model_plugin_name(const io::HfConfig& config) { return config.model_type(); }

std::unique_ptr<ModelInstance> load_model(host::HostSession& session, const plugins::PluginRegistry& registry,
                                          const std::filesystem::path& dir, const ModelLoadOptions& options) {
  io::HfConfig config = io::read_hf_config(dir);
  const std::string name = options.plugin.empty() ? model_plugin_name(config) : options.plugin;
  const plugins::PluginRecord& plugin = registry.require(ENG_KIND_MODEL, name);
  auto model = std::make_unique<ModelInstance>(session, plugin, config.text, options.options_json);
  spdlog::debug("model {}: plugin {} declared {} parameters", dir.string(), name, session.params().size());
  if (!options.trainable) {
    for (size_t i = 0; i < session.params().size(); ++i)
      session.params().set_trainable(session.params().at(i), false);
  }
  if (options.before_weights) options.before_weights(*model);
  if (!options.load_weights) return model;

  io::SafetensorsCheckpoint checkpoint = io::SafetensorsCheckpoint::open(dir);
  CheckpointLoadOptions load;
  load.tied_lm_head = model->info().tie_word_embeddings != 0;
  load.store.allow_missing = options.allow_missing;
  rt::LoadReport report = load_checkpoint(session.params(), checkpoint, load);
  spdlog::debug("loaded {} tensors from {}", report.loaded.size(), dir.string());
  return model;
}

}  // namespace engine::session
