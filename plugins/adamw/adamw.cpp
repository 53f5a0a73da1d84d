// adamw: AdamW (Loshchilov & Hutter 2019) as torch.optim.AdamW computes it (adamw_update.hpp), fp32 state
// (exp_avg, exp_avg_sq: 8 bytes per trainable element) kept as engine tensors on the parameter's device.
// Weight decay comes per parameter group: the engine passes 0 for ENG_PARAM_NO_DECAY parameters (biases,
// norms). CPU tensors are updated in place; on other devices the update runs on a host copy (correct, slow:
// a CUDA kernel belongs here before large GPU runs).
//
// Recipe: [optimizer] plugin = "adamw", lr, weight_decay, betas = [0.9, 0.999], eps = 1e-8.
// State in checkpoints: "<param>.exp_avg", "<param>.exp_avg_sq" (f32, the parameter's shape) and
// "<param>.step" (i64, one element) for every parameter stepped at least once.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "adamw_update.hpp"
#include "engine/cpp/json.hpp"
#include "engine/cpp/optimizer.hpp"

namespace adamw {
namespace {

using engine::sdk::Error;
using engine::sdk::Host;
using engine::sdk::Json;
using engine::sdk::Param;
using engine::sdk::Tensor;

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "betas": {"type": "array", "items": {"type": "number"}, "default": [0.9, 0.999], "description": "coefficients of the running averages of the gradient and its square"},
  "eps": {"type": "number", "default": 1e-8, "minimum": 0, "description": "added to the denominator for numerical stability"}
}})json";

struct Slot {
  Param param;
  std::string name;
  eng_param_group group{};
  std::vector<int64_t> shape;
  Tensor exp_avg;  // f32, the parameter's shape; empty until the first step
  Tensor exp_avg_sq;
  int64_t steps = 0;  // this parameter's own step count (torch's state["step"])
};

class AdamW : public engine::sdk::Optimizer {
 public:
  AdamW(Host&, const std::string& options_json) {
    Json o = Json::parse(options_json.empty() ? "{}" : options_json);
    for (const auto& [key, value] : o.members()) {
      (void)value;
      if (key != "lr" && key != "weight_decay" && key != "betas" && key != "eps") {
        throw Error("adamw: unknown option '" + key + "'; the options are lr, weight_decay, betas, eps");
      }
    }
    if (o.contains("betas")) {
      const auto& b = o["betas"].items();
      if (b.size() != 2) throw Error("adamw: betas must be two numbers, e.g. [0.9, 0.999]");
      beta1_ = b[0].as_double();
      beta2_ = b[1].as_double();
    }
    eps_ = o.get("eps", 1e-8);
    if (!(beta1_ >= 0 && beta1_ < 1 && beta2_ >= 0 && beta2_ < 1)) {
      throw Error("adamw: betas must lie in [0, 1), got [" + std::to_string(beta1_) + ", " +
                  std::to_string(beta2_) + "]");
    }
    if (!(eps_ >= 0)) throw Error("adamw: eps must be >= 0");
  }

  void add_param(Host& host, Param param, const eng_param_group& group) override {
    auto s = std::make_unique<Slot>();
    auto info = host.info(param);
    s->param = param;
    s->name = info.name;
    s->group = group;
    s->shape = info.shape;
    slots_.push_back(std::move(s));
  }

  void step(Host& host, const eng_optim_step& st) override {
    // The update is never part of the graph. (Also the SDK's compile check for NoGrad: GCC 12 -O3 rejected
    // exactly this use with -Wdangling-pointer while NoGrad kept its context copy inside itself.)
    engine::sdk::NoGrad no_grad(host);
    for (auto& s : slots_) {
      Tensor grad = host.grad(s->param);
      if (!grad) continue;
      Tensor value = host.value(s->param);
      if (value.dtype() != ENG_F32) {
        throw Error("adamw: parameter " + s->name + " is stored as " +
                        engine::sdk::dtype_name(value.dtype()) +
                        "; trainable parameters must have an fp32 master",
                    ENG_ERR_UNSUPPORTED);
      }
      if (!s->exp_avg) {
        s->exp_avg = host.zeros(ENG_F32, s->shape);
        s->exp_avg_sq = host.zeros(ENG_F32, s->shape);
      }
      s->steps += 1;
      Hyper h;
      h.lr = st.lr * (s->group.lr_scale == 0.0 ? 1.0 : s->group.lr_scale);
      h.beta1 = beta1_;
      h.beta2 = beta2_;
      h.eps = eps_;
      h.weight_decay = s->group.weight_decay;
      h.grad_scale = st.grad_scale;
      if (grad.dtype() != ENG_F32) grad = host.cast(grad, ENG_F32);
      if (value.is_cpu() && grad.is_cpu() && value.is_contiguous() && grad.is_contiguous() &&
          s->exp_avg.is_cpu()) {
        update(value.data<float>(), s->exp_avg.data<float>(), s->exp_avg_sq.data<float>(), grad.data<float>(),
               value.numel(), h, s->steps);
      } else {
        std::vector<float> p = host.to_vector<float>(value), m = host.to_vector<float>(s->exp_avg),
                           v = host.to_vector<float>(s->exp_avg_sq), g = host.to_vector<float>(grad);
        update(p.data(), m.data(), v.data(), g.data(), static_cast<int64_t>(p.size()), h, s->steps);
        host.copy_(value, host.from_vector<float>(s->shape, p));
        host.copy_(s->exp_avg, host.from_vector<float>(s->shape, m));
        host.copy_(s->exp_avg_sq, host.from_vector<float>(s->shape, v));
      }
    }
  }

  void save_state(Host& host, eng_state st) override {
    for (auto& s : slots_) {
      if (s->steps == 0) continue;
      host.state_put(st, s->name + ".exp_avg", s->exp_avg);
      host.state_put(st, s->name + ".exp_avg_sq", s->exp_avg_sq);
      host.state_put(st, s->name + ".step", host.from_vector<int64_t>({1}, {s->steps}));
    }
  }

  void load_state(Host& host, eng_state st) override {
    for (auto& s : slots_) {
      Tensor step = host.state_try_get(st, s->name + ".step");
      if (!step) {
        s->steps = 0;
        s->exp_avg = Tensor();
        s->exp_avg_sq = Tensor();
        continue;
      }
      s->steps = host.to_vector<int64_t>(step).at(0);
      Tensor m = host.state_get(st, s->name + ".exp_avg");
      Tensor v = host.state_get(st, s->name + ".exp_avg_sq");
      if (m.shape() != s->shape || v.shape() != s->shape) {
        throw Error("adamw: the saved state of " + s->name +
                        " has another shape than the parameter; the checkpoint "
                        "belongs to a different model or adapter configuration",
                    ENG_ERR_INVALID_ARGUMENT);
      }
      s->exp_avg = host.zeros(ENG_F32, s->shape);
      s->exp_avg_sq = host.zeros(ENG_F32, s->shape);
      host.copy_(s->exp_avg, m);
      host.copy_(s->exp_avg_sq, v);
    }
  }

  double state_bytes_per_element() override { return 8.0; }

 private:
  double beta1_ = 0.9;
  double beta2_ = 0.999;
  double eps_ = 1e-8;
  std::vector<std::unique_ptr<Slot>> slots_;
};

}  // namespace
}  // namespace adamw

ENGINE_REGISTER_OPTIMIZER(adamw::AdamW, "adamw", "1.0.0",
                          "AdamW as torch.optim.AdamW (decoupled weight decay, bias correction, fp32 state)",
                          adamw::kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA)
