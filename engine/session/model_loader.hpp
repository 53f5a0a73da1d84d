// Model loading: a Hugging Face model directory -> a model plugin instance whose parameters live in a
// HostSession's parameter store, with the checkpoint's weights streamed in.
//
//   host::HostSession hs(device, seed);
//   auto registry = ...;                                 // plugins::PluginRegistry with the model plugins
//   std::unique_ptr<ModelInstance> m = load_model(hs, registry, "Qwen2.5-7B-Instruct/");
//   rt::Tensor hidden = m->forward(ids, positions);      // (B,T,C), recorded on hs.tape()
//   rt::Tensor logits = m->logits(last_rows);            // (N,V), lm_head applied, not recorded
//
// Steps of load_model: read config.json (io::read_hf_config); pick the model plugin by model_type (qwen2 ->
// "qwen2", llama -> "llama", or the one named in the options); create it with the config text; declare its
// parameters (HostSession::set_declaring, so each layer's parameters carry their block index); open the
// safetensors checkpoint (one file or index + shards) and stream every tensor into its parameter, converting
// dtype (checkpoint_reader.hpp). A checkpoint whose names do not match is refused, listing missing and
// unexpected tensors. The PEFT and quantizer plugins of a run are set up by the caller between declaring and
// loading (load_model's `before_weights` hook), because a quantizer must see the weights as they load.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "engine/abi/model.h"
#include "engine/host/host_session.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/plugins/plugin_registry.hpp"
#include "engine/runtime/kv_cache.hpp"
#include "engine/runtime/param_store.hpp"
#include "engine/runtime/tensor.hpp"

namespace engine::session {

// eng_model_info with its strings owned.
struct ModelInfo {
  eng_model_info raw{};  // raw.lm_head_param / raw.architecture point into the strings below
  std::string lm_head_param;
  std::string architecture;
};

class ModelInstance {
 public:
  // Creates the plugin's model from config.json text and declares its parameters in session.params().
  ModelInstance(host::HostSession& session, const plugins::PluginRecord& plugin,
                const std::string& hf_config_json, const std::string& options_json = "{}");
  ~ModelInstance();
  ModelInstance(const ModelInstance&) = delete;
  ModelInstance& operator=(const ModelInstance&) = delete;

  const eng_model_info& info() const noexcept { return info_.raw; }
  const std::string& plugin_name() const noexcept { return plugin_name_; }
  host::HostSession& session() const noexcept { return *session_; }
  // The (V,C) output projection (lm_head.weight, or the embedding when tied).
  rt::Param& lm_head() const;

  // The plugin's forward: input_ids and position_ids (B,T) i32, segment_ids (B,T) i32 or undefined (packing),
  // cache for generation (k/v appended; pass grad_enabled = false) -> final hidden states (B,T,C).
  rt::Tensor forward(const rt::Tensor& input_ids, const rt::Tensor& position_ids,
                     const rt::Tensor& segment_ids = rt::Tensor(), rt::KvCache* cache = nullptr,
                     bool grad_enabled = true);
  // The blocks [first, last) alone (pipeline parallelism; the plugin's ABI 1.1 forward_blocks): from the
  // token ids when first == 0 (input undefined), else from `input` (B,T,C), the hidden states after block
  // first - 1; the final norm is applied when last == n_layers. Refused for a plugin without the entry.
  bool has_forward_blocks() const noexcept;
  rt::Tensor forward_blocks(const rt::Tensor& input_ids, const rt::Tensor& position_ids,
                            const rt::Tensor& segment_ids, const rt::Tensor& input, int32_t first, int32_t last,
                            bool grad_enabled = true);
  // hidden (N,C) -> logits (N,V) = hidden lm_head^T, through the linear seam, not recorded.
  rt::Tensor logits(const rt::Tensor& hidden);
  // The training loss, recorded on the tape: hidden (B,T,C) or (N,C) from forward, labels (N = B*T) i32
  // already shifted (labels[i] is the token that position i predicts, ignore_index where there is none) ->
  // () f32 = scale * sum of cross-entropy over the labelled positions, through the fused linear+cross-entropy
  // (full logits never exist). scale = 1 / (label tokens in the global batch) gives transformers' mean.
  rt::Tensor loss(const rt::Tensor& hidden, const rt::Tensor& labels, double scale,
                  int64_t ignore_index = -100);

 private:
  [[noreturn]] void fail_call(const char* what, eng_status status) const;
  // forward (input null) or forward_blocks (input: the stage's input, undefined for the first stage).
  rt::Tensor run_forward(const rt::Tensor& input_ids, const rt::Tensor& position_ids, const rt::Tensor& segment_ids,
                         rt::KvCache* cache, bool grad_enabled, const rt::Tensor* input, int32_t first,
                         int32_t last);

  host::HostSession* session_;
  const eng_model_vtable* vt_;
  std::string plugin_name_;
  using PluginObject =
      std::unique_ptr<void, void (*)(void*)>;  // the plugin's model, freed by vtable->destroy
  PluginObject self_{nullptr, nullptr};
  ModelInfo info_;
};

// The model plugin for a config.json's model_type: "qwen2" and "llama" map to themselves; other values are
// returned unchanged (a third-party plugin may register under its model_type).
std::string model_plugin_name(const io::HfConfig& config);

struct ModelLoadOptions {
  std::string plugin;               // empty: model_plugin_name(config)
  std::string options_json = "{}";  // the recipe's [model] section
  bool load_weights = true;         // false: keep the declared initialisation (init-model)
  bool trainable = true;       // false: every model parameter frozen before the weights load, so they stay
                               // in the declared dtype (no fp32 masters): generation, PEFT training
  bool allow_missing = false;  // parameters the checkpoint lacks keep their initialisation
  // Called after the parameters are declared and before the weights stream in (attach PEFT, set a quantizer).
  std::function<void(ModelInstance&)> before_weights;
};

// Loads `dir` (a Hugging Face model directory) into session; see the file comment.
std::unique_ptr<ModelInstance> load_model(host::HostSession& session, const plugins::PluginRegistry& registry,
                                          const std::filesystem::path& dir,
                                          const ModelLoadOptions& options = {});

}  // namespace engine::session
