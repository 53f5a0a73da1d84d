// ia3: (IA)^3, "Infused Adapter by Inhibiting and Amplifying Inner Activations" (Liu et al. 2022), as an
// out-of-tree PEFT plugin written against the SDK alone (docs/PLUGINS.md, "PEFT").
//
// For each target projection W (out, in) it learns one vector l (out), initialised to ones:
//   y = (x W^T + b) * l          (the output-scaling form of Hugging Face PEFT's IA3 for non-feedforward modules)
// PEFT's feedforward form scales the input instead (x * l) W^T; through the engine's linear seam the base term
// arrives already computed, so this plugin offers the output form only and has no feedforward_modules option.
//
// What the SDK contract asks of a PEFT plugin, and where this file does it:
//  - targets through the engine's matcher: host.target_match(target_modules, module) in attach();
//  - the base is already frozen by the engine: only the vectors are declared trainable;
//  - save() writes every trainable parameter under its own name (PEFT's key "base_model.model.<module>.ia3_l",
//    shape (out, 1) as PEFT stores it) plus adapter_config.json, both atomically through the host.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/cpp/peft.hpp"

namespace {

using engine::sdk::Error;
using engine::sdk::Host;
using engine::sdk::NoGrad;
using engine::sdk::Param;
using engine::sdk::State;
using engine::sdk::Tensor;

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "target_modules": {"default": ["k_proj", "v_proj"], "description": "modules to scale: \"all-linear\", a list of names, or a regular expression (the engine's matcher)"}
}})json";

struct Target {
  std::string module;  // model.layers.0.self_attn.k_proj
  Param l;             // (out) f32
  int64_t out = 0;
};

class Ia3 : public engine::sdk::Peft {
 public:
  Ia3(Host&, const std::string& options_json) {
    const nlohmann::json o = nlohmann::json::parse(options_json.empty() ? "{}" : options_json);
    spec_ = o.value("target_modules", nlohmann::json::array({"k_proj", "v_proj"}));
  }

  void attach(Host& host) override {
    const std::string spec = spec_.dump();
    const std::string suffix = ".weight";
    for (Param p : host.params()) {
      const engine::sdk::ParamInfo info = host.info(p);
      if (info.role != ENG_ROLE_LINEAR || info.name.size() <= suffix.size()) continue;
      const std::string module = info.name.substr(0, info.name.size() - suffix.size());
      if (!host.target_match(spec, module)) continue;
      targets_.push_back({module, Param(), info.shape[0]});
      bases_.push_back(p);
    }
    if (targets_.empty())
      throw Error("ia3: target_modules " + spec + " matched no linear layer of the model", ENG_ERR_INVALID_ARGUMENT);
    for (size_t i = 0; i < targets_.size(); ++i) {
      Target& t = targets_[i];
      t.l = host.declare({key(t), {t.out}, ENG_F32, ENG_ROLE_ADAPTER, ENG_PARAM_TRAINABLE, ENG_INIT_ONES, 0.0});
      host.peft_attach(bases_[i], &t);  // targets_ no longer grows: the cookie stays valid
    }
    host.info("ia3: scaling " + std::to_string(targets_.size()) + " linear layers");
  }

  // base_out (..., out) * l (out)
  Tensor linear(Host& host, void* cookie, const Tensor&, const Tensor& base_out) override {
    Tensor l = host.param(static_cast<const Target*>(cookie)->l);
    if (l.dtype() != base_out.dtype()) l = host.cast(l, base_out.dtype());
    return host.mul(base_out, l);
  }

  // weight (out, in) -> diag(l) weight: row o scaled by l[o]. (W^T l) == (l^T W)^T, done as a transposed mul.
  Tensor merge(Host& host, void* cookie, const Tensor& weight) override {
    NoGrad no_grad(host);
    Tensor l = host.value(static_cast<const Target*>(cookie)->l);
    if (l.dtype() != weight.dtype()) l = host.cast(l, weight.dtype());
    Tensor wt = host.contiguous(host.transpose(weight, 0, 1));  // (in, out)
    return host.contiguous(host.transpose(host.mul(wt, l), 0, 1));
  }

  void save(Host& host, const std::string& dir, const std::string& base_model_path) override {
    State st = host.state_create();
    nlohmann::json modules = nlohmann::json::array();
    for (const Target& t : targets_) {
      host.state_put(st.get(), key(t), host.reshape(host.value(t.l), {t.out, 1}));  // PEFT's (out, 1)
      modules.push_back(t.module.substr(t.module.rfind('.') + 1));
    }
    host.write_safetensors(dir + "/adapter_model.safetensors", st, {{"format", "pt"}});
    host.write_json(dir + "/adapter_config.json",
                    {{"peft_type", "IA3"},
                     {"task_type", "CAUSAL_LM"},
                     {"base_model_name_or_path", base_model_path},
                     {"target_modules", spec_.is_array() ? spec_ : modules},
                     {"feedforward_modules", nlohmann::json::array()},
                     {"fan_in_fan_out", false},
                     {"init_ia3_weights", true},
                     {"inference_mode", true},
                     {"modules_to_save", nullptr}});
  }

  void load(Host& host, const std::string& dir) override {
    const std::string file = dir + "/adapter_model.safetensors";
    State st = host.read_safetensors(file);
    NoGrad no_grad(host);
    for (const Target& t : targets_) {
      Tensor src = host.state_get(st.get(), key(t));
      if (src.numel() != t.out)
        throw Error(file + ": " + key(t) + " has " + std::to_string(src.numel()) + " elements, this model's " +
                        t.module + " has " + std::to_string(t.out) + " outputs",
                    ENG_ERR_INVALID_ARGUMENT);
      host.copy_(host.value(t.l), host.reshape(src, {t.out}));
    }
  }

 private:
  static std::string key(const Target& t) { return "base_model.model." + t.module + ".ia3_l"; }

  nlohmann::json spec_;
  std::vector<Target> targets_;
  std::vector<Param> bases_;
};

}  // namespace

ENGINE_REGISTER_PEFT(Ia3, "ia3", "0.1.0", "IA3 output scaling vectors (PEFT IA3 names), an out-of-tree example",
                     kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA | ENG_PEFT_CAP_QUANTIZED_BASE | ENG_PEFT_CAP_MERGE)
