// lora: Low-Rank Adaptation (Hu et al. 2021) as Hugging Face PEFT implements it, through the linear seam.
//
// For each target projection W (out, in) it adds trainable A (r, in) and B (out, r):
//   y = x W^T (+ b)  +  scaling * dropout(x) A^T B^T          scaling = lora_alpha / r  (rsLoRA: / sqrt(r))
// A starts Kaiming-uniform with a = sqrt(5) (torch's nn.Linear default, as PEFT's init_lora_weights=True) and
// B at zero, so the model is unchanged at step 0. The base term comes from the engine (bf16, fp32 or a
// quantizer's on-the-fly product), so any base storage works. Adapter parameters carry PEFT's saved key names
// ("base_model.model.<module>.lora_A.weight"), which is what adapter_model.safetensors holds.
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cpp/json.hpp"
#include "engine/cpp/peft.hpp"
#include "lora_options.hpp"

namespace lora {
namespace {

using engine::sdk::Error;
using engine::sdk::Host;
using engine::sdk::Json;
using engine::sdk::NoGrad;
using engine::sdk::Param;
using engine::sdk::ParamInfo;
using engine::sdk::State;
using engine::sdk::Tensor;

constexpr char kKeyPrefix[] = "base_model.model.";

struct Target {
  std::string module;  // "model.layers.0.self_attn.q_proj"
  Param base;
  Param a;  // (r, in)
  Param b;  // (out, r)
  int64_t in = 0;
  int64_t out = 0;
  uint32_t tp = 0;  // the base's ENG_PARAM_TP_COLUMN / ENG_PARAM_TP_ROW
  std::string a_key() const { return kKeyPrefix + module + ".lora_A.weight"; }
  std::string b_key() const { return kKeyPrefix + module + ".lora_B.weight"; }
};

std::string short_name(const std::string& module) {
  size_t dot = module.rfind('.');
  return dot == std::string::npos ? module : module.substr(dot + 1);
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot read " + path + ": no such file or not readable", ENG_ERR_IO);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string fmt_number(double v) {
  std::ostringstream ss;
  ss.precision(17);
  ss << v;
  std::string s = ss.str();
  if (s.find_first_of(".eE") == std::string::npos && s != "inf" && s != "nan") s += ".0";
  return s;
}

class Lora : public engine::sdk::Peft {
 public:
  Lora(Host&, const std::string& options_json) : opt_(parse_lora_options(options_json)) {}

  void attach(Host& host) override {
    if (!targets_.empty()) throw Error("lora: attach called twice", ENG_ERR_INTERNAL);
    std::set<std::string> linear_names;
    std::vector<Param> all = host.params();
    for (Param p : all) {
      ParamInfo info = host.info(p);
      if (info.role != ENG_ROLE_LINEAR) continue;
      const std::string suffix = ".weight";
      if (info.name.size() <= suffix.size() ||
          info.name.compare(info.name.size() - suffix.size(), suffix.size(), suffix) != 0) {
        continue;
      }
      const std::string module = info.name.substr(0, info.name.size() - suffix.size());
      linear_names.insert(short_name(module));
      if (!host.target_match(opt_.target_spec, module)) continue;
      if (info.shape.size() != 2) {
        throw Error("lora: target " + info.name + " is not a 2-d projection weight",
                    ENG_ERR_INVALID_ARGUMENT);
      }
      auto t = std::make_unique<Target>();
      t->module = module;
      t->base = p;
      t->out = info.shape[0];
      t->in = info.shape[1];
      t->tp = info.flags & (ENG_PARAM_TP_COLUMN | ENG_PARAM_TP_ROW);
      targets_.push_back(std::move(t));
    }
    if (targets_.empty()) {
      std::string names;
      for (const auto& n : linear_names) names += (names.empty() ? "" : ", ") + n;
      throw Error(
          "lora: target_modules matched no linear layer of the model; its linear layers are: " + names,
          ENG_ERR_INVALID_ARGUMENT);
    }
    // Only the adapters train (PEFT's mark_only_lora_as_trainable): the engine froze the base before attach.
    // Tensor parallelism splits the adapters with their base: A (r, in) along its input like a row-split base,
    // B (out, r) along its output like a column-split one; the other matrix stays whole, and its gradient is
    // a partial sum on each rank (ENG_PARAM_TP_PARTIAL_GRAD).
    for (auto& t : targets_) {
      const uint32_t a_tp = t->tp == ENG_PARAM_TP_ROW ? ENG_PARAM_TP_ROW : t->tp != 0 ? ENG_PARAM_TP_PARTIAL_GRAD : 0;
      const uint32_t b_tp = t->tp == ENG_PARAM_TP_COLUMN ? ENG_PARAM_TP_COLUMN : t->tp != 0 ? ENG_PARAM_TP_PARTIAL_GRAD : 0;
      t->a = host.declare({t->a_key(),
                           {opt_.r, t->in},
                           ENG_F32,
                           ENG_ROLE_ADAPTER,
                           ENG_PARAM_TRAINABLE | a_tp,
                           ENG_INIT_KAIMING_UNIFORM,
                           5.0});
      t->b = host.declare({t->b_key(),
                           {t->out, opt_.r},
                           ENG_F32,
                           ENG_ROLE_ADAPTER,
                           ENG_PARAM_TRAINABLE | b_tp,
                           ENG_INIT_ZEROS,
                           0.0});
      host.peft_attach(t->base, t.get());
    }
    host.info("lora: r=" + std::to_string(opt_.r) + ", scaling " + fmt_number(opt_.scaling()) + " on " +
              std::to_string(targets_.size()) + " linear layers");
  }

  // x (..., in), base_out (..., out) -> base_out + scaling * (dropout(x) A^T) B^T
  Tensor linear(Host& host, void* cookie, const Tensor& x, const Tensor& base_out) override {
    const Target& t = target(cookie);
    Tensor xin = (opt_.lora_dropout > 0.0 && host.grad_enabled()) ? host.dropout(x, opt_.lora_dropout) : x;
    Tensor a = host.param(t.a);  // (r, in) f32
    Tensor b = host.param(t.b);  // (out, r) f32
    if (x.dtype() != a.dtype()) {
      a = host.cast(a, x.dtype());
      b = host.cast(b, x.dtype());
    }
    Tensor h = host.matmul(xin, a, false, true);  // (..., r)
    // The scaling multiplies the rank-r intermediate, not the (..., out) product: the same math for an
    // r-th of the memory traffic (a power-of-two scaling, such as alpha = 2r, even gives the same bits), and
    // none at all when it is 1 (alpha = r).
    if (opt_.scaling() != 1.0) h = host.scale(h, opt_.scaling());
    Tensor d = host.matmul(h, b, false, true);  // (..., out)
    if (d.dtype() != base_out.dtype()) d = host.cast(d, base_out.dtype());
    return host.add(base_out, d);
  }

  // weight (out, in) f32 -> weight + scaling * B A
  Tensor merge(Host& host, void* cookie, const Tensor& weight) override {
    const Target& t = target(cookie);
    NoGrad no_grad(host);
    Tensor delta = host.matmul(host.value(t.b), host.value(t.a));  // (out, r) @ (r, in) -> (out, in)
    delta = host.scale(delta, opt_.scaling());
    if (delta.dtype() != weight.dtype()) delta = host.cast(delta, weight.dtype());
    return host.add(weight, delta);
  }

  // adapter_model.safetensors through the engine's writer (F32, keys sorted, {"format": "pt"}: the bytes
  // PEFT's save_pretrained writes) and adapter_config.json.
  void save(Host& host, const std::string& dir, const std::string& base_model_path) override {
    State st = host.state_create();
    std::vector<std::string> modules;
    for (const auto& t : targets_) {
      host.state_put(st.get(), t->a_key(), host.value(t->a));  // (r, in) f32
      host.state_put(st.get(), t->b_key(), host.value(t->b));  // (out, r) f32
      modules.push_back(t->module);
    }
    host.write_safetensors(dir + "/adapter_model.safetensors", st, {{"format", "pt"}});
    host.write_json(dir + "/adapter_config.json", config_json(base_model_path, modules));
  }

  // Reads through the engine's validated reader; any float dtype PEFT writes (F32, BF16, F16, F64) is
  // converted by copy_ into the f32 adapter parameters.
  void load(Host& host, const std::string& dir) override {
    check_config(dir + "/adapter_config.json");
    const std::string file = dir + "/adapter_model.safetensors";
    State st = host.read_safetensors(file);
    std::set<std::string> present;
    for (const std::string& key : st.keys()) present.insert(key);
    for (const auto& t : targets_) {
      load_one(host, st, present, file, t->a_key(), t->a, {opt_.r, t->in});
      load_one(host, st, present, file, t->b_key(), t->b, {t->out, opt_.r});
      present.erase(t->a_key());
      present.erase(t->b_key());
    }
    if (!present.empty()) {
      throw Error(file + " holds " + *present.begin() +
                      ", which this run's target_modules do not target; use the adapter's own "
                      "target_modules (adapter_config.json)",
                  ENG_ERR_INVALID_ARGUMENT);
    }
  }

 private:
  static const Target& target(void* cookie) {
    if (cookie == nullptr) throw Error("lora: the engine passed no target", ENG_ERR_INTERNAL);
    return *static_cast<const Target*>(cookie);
  }

  void load_one(Host& host, const State& st, const std::set<std::string>& present, const std::string& file,
                const std::string& key, Param p, const std::vector<int64_t>& shape) {
    if (!present.count(key)) {
      throw Error(
          file + " has no tensor " + key + "; was it written for another model or other target_modules?",
          ENG_ERR_NOT_FOUND);
    }
    Tensor src = host.state_get(st.get(), key);
    if (src.shape() != shape) {
      std::string got, want;
      for (int64_t d : src.shape()) got += (got.empty() ? "" : ", ") + std::to_string(d);
      for (int64_t d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
      throw Error(file + ": " + key + " has shape (" + got + "), this run expects (" + want +
                      "); the adapter's r or the base model differ",
                  ENG_ERR_INVALID_ARGUMENT);
    }
    const eng_dtype dt = src.dtype();
    if (dt != ENG_F32 && dt != ENG_BF16 && dt != ENG_F16 && dt != ENG_F64) {
      throw Error(file + ": tensor " + key + " has dtype " + engine::sdk::dtype_name(dt) +
                      "; adapters must be F32, F64, BF16 or F16",
                  ENG_ERR_INVALID_ARGUMENT);
    }
    NoGrad no_grad(host);
    host.copy_(host.value(p), src);
  }

  void check_config(const std::string& path) const {
    if (!std::filesystem::exists(path)) return;  // the weights alone are enough to load
    Json c = Json::parse(read_text_file(path));
    auto has = [&](const char* k) { return c.contains(k) && !c[k].is_null(); };
    if (has("peft_type") && c["peft_type"].as_string() != "LORA") {
      throw Error(path + " describes a " + c["peft_type"].as_string() + " adapter, not LORA",
                  ENG_ERR_INVALID_ARGUMENT);
    }
    if (has("r") && c["r"].as_int() != opt_.r) {
      throw Error(path + " has r=" + std::to_string(c["r"].as_int()) +
                      " but this run uses r=" + std::to_string(opt_.r),
                  ENG_ERR_INVALID_ARGUMENT);
    }
    if (has("lora_alpha") && c["lora_alpha"].as_double() != opt_.lora_alpha) {
      throw Error(path + " has lora_alpha=" + fmt_number(c["lora_alpha"].as_double()) +
                      " but this run uses " + fmt_number(opt_.lora_alpha),
                  ENG_ERR_INVALID_ARGUMENT);
    }
    if (has("use_rslora") && c["use_rslora"].as_bool() != opt_.use_rslora) {
      throw Error(path + " and this run disagree on use_rslora", ENG_ERR_INVALID_ARGUMENT);
    }
  }

  // PEFT's LoraConfig fields (peft 0.x), enough for LoraConfig.from_pretrained and PeftModel.from_pretrained.
  nlohmann::json config_json(const std::string& base_model_path,
                             const std::vector<std::string>& modules) const {
    using nlohmann::json;
    return json{
        {"alpha_pattern", json::object()},
        {"auto_mapping", nullptr},
        {"base_model_name_or_path", base_model_path},
        {"bias", "none"},
        {"fan_in_fan_out", false},
        {"inference_mode", true},
        {"init_lora_weights", true},
        {"layers_pattern", nullptr},
        {"layers_to_transform", nullptr},
        {"loftq_config", json::object()},
        {"lora_alpha", opt_.lora_alpha},
        {"lora_dropout", opt_.lora_dropout},
        {"megatron_config", nullptr},
        {"megatron_core", "megatron.core"},
        {"modules_to_save", nullptr},
        {"peft_type", "LORA"},
        {"r", opt_.r},
        {"rank_pattern", json::object()},
        {"revision", nullptr},
        {"target_modules", opt_.saved_target_modules(modules)},
        {"task_type", "CAUSAL_LM"},
        {"use_dora", false},
        {"use_rslora", opt_.use_rslora},
    };
  }

  LoraOptions opt_;
  std::vector<std::unique_ptr<Target>> targets_;
};

}  // namespace
}  // namespace lora

ENGINE_REGISTER_PEFT(
    lora::Lora, "lora", "1.0.0",
    "LoRA adapters (PEFT-compatible: rsLoRA, dropout, all-linear targets, merge, PEFT save/load)",
    lora::kLoraSchema,
    ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA | ENG_PEFT_CAP_QUANTIZED_BASE | ENG_PEFT_CAP_MERGE)
