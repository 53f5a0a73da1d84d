// lion: the Lion optimizer (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), as a third
// party would ship it, written only with the engine's op table, so the same code runs on the CPU and on CUDA:
//
//   w <- (1 - lr wd) w - lr sign(beta1 m + (1 - beta1) g)      g = grad_scale * gradient
//   m <- beta2 m + (1 - beta2) g
//
// A step is two multi-tensor calls per parameter group (foreach_add_sign_ and foreach_axpby_), whatever the
// number of parameters: no loop over elements, no DLPack view, no kernel of its own. The momentum buffers are
// fp32 (the parameters' masters are fp32 too) and are saved and resumed under "<parameter name>.exp_avg".
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/cpp/json.hpp"
#include "engine/cpp/optimizer.hpp"

namespace {

using engine::sdk::Host;
using engine::sdk::Json;
using engine::sdk::Param;
using engine::sdk::Tensor;

constexpr char kSchema[] = R"schema({
  "type": "object",
  "properties": {
    "lr": {"type": "number", "minimum": 0, "description": "peak learning rate (set by the engine's [optimizer] lr; Lion wants 3-10x less than AdamW)"},
    "weight_decay": {"type": "number", "default": 0.0, "minimum": 0, "description": "decoupled weight decay (the engine's per-group value is used)"},
    "beta1": {"type": "number", "default": 0.9, "minimum": 0, "maximum": 1, "description": "interpolation of momentum and gradient inside the sign"},
    "beta2": {"type": "number", "default": 0.99, "minimum": 0, "maximum": 1, "description": "momentum decay"}
  }
})schema";

class Lion : public engine::sdk::Optimizer {
 public:
  Lion(Host&, const std::string& options_json) {
    Json o = Json::parse(options_json);
    beta1_ = o.get("beta1", 0.9);
    beta2_ = o.get("beta2", 0.99);
  }

  void add_param(Host& host, Param param, const eng_param_group& group) override {
    const auto info = host.info(param);
    Group& g = groups_[{group.weight_decay, group.lr_scale}];
    g.params.push_back(param);
    g.names.push_back(info.name);
    g.momentum.push_back(host.zeros(ENG_F32, info.shape));
  }

  void step(Host& host, const eng_optim_step& st) override {
    for (auto& [key, g] : groups_) {
      const auto [weight_decay, lr_scale] = key;
      // the parameters of this group that have a gradient this step
      std::vector<Tensor> w, grad, m;
      for (size_t i = 0; i < g.params.size(); ++i) {
        Tensor gi = host.grad(g.params[i]);
        if (!gi) continue;
        w.push_back(host.value(g.params[i]));
        grad.push_back(std::move(gi));
        m.push_back(g.momentum[i]);
      }
      if (w.empty()) continue;
      const double lr = st.lr * lr_scale, s = st.grad_scale;
      // w = (1 - lr wd) w - lr sign(beta1 m + (1 - beta1) s g)
      host.foreach_add_sign_(w, 1.0 - lr * weight_decay, m, beta1_, grad, (1.0 - beta1_) * s, -lr);
      // m = beta2 m + (1 - beta2) s g
      host.foreach_axpby_(m, beta2_, grad, (1.0 - beta2_) * s);
    }
  }

  void save_state(Host& host, eng_state st) override {
    for (const auto& [key, g] : groups_)
      for (size_t i = 0; i < g.params.size(); ++i) host.state_put(st, g.names[i] + ".exp_avg", g.momentum[i]);
  }
  void load_state(Host& host, eng_state st) override {
    for (auto& [key, g] : groups_) {
      for (size_t i = 0; i < g.params.size(); ++i) {
        Tensor saved = host.state_try_get(st, g.names[i] + ".exp_avg");
        if (saved) host.copy_(g.momentum[i], saved);  // absent: a parameter new since the checkpoint starts at 0
      }
    }
  }
  double state_bytes_per_element() override { return 4.0; }

 private:
  struct Group {
    std::vector<Param> params;
    std::vector<std::string> names;
    std::vector<Tensor> momentum;  // fp32, shaped like the parameter
  };

  double beta1_ = 0.9, beta2_ = 0.99;
  std::map<std::pair<double, double>, Group> groups_;  // by (weight_decay, lr_scale)
};

}  // namespace

ENGINE_REGISTER_OPTIMIZER(Lion, "lion", "0.1.0", "Lion (sign of interpolated momentum), written with the op table only",
                          kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA)
