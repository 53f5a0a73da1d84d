// sgd_momentum: SGD with momentum and decoupled weight decay, as a third party would ship it.
//
//   m <- mu * m + grad_scale * g
//   w <- (1 - lr * wd) * w - lr * m
//
// Written only with the op table (two multi-tensor foreach_axpby_ calls per step and weight-decay value, for
// all parameters at once), so the same code runs wherever the engine does, CPU or CUDA. The momentum buffers
// are saved and resumed through the state dictionary under "<parameter name>.momentum_buffer".
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
    "lr": {"type": "number", "minimum": 0, "description": "peak learning rate (set by the engine's [optimizer] lr)"},
    "weight_decay": {"type": "number", "default": 0.0, "minimum": 0, "description": "decoupled weight decay"},
    "momentum": {"type": "number", "default": 0.9, "minimum": 0, "maximum": 1, "description": "momentum factor mu"}
  }
})schema";

class SgdMomentum : public engine::sdk::Optimizer {
 public:
  SgdMomentum(Host&, const std::string& options_json) {
    Json o = Json::parse(options_json);
    momentum_ = o.get("momentum", 0.9);
  }

  void add_param(Host& host, Param param, const eng_param_group& group) override {
    Slot s{param, host.info(param).name, group.weight_decay, host.zeros(ENG_F32, host.info(param).shape)};
    slots_.push_back(std::move(s));
  }

  void step(Host& host, const eng_optim_step& st) override {
    // one pair of multi-tensor calls per distinct weight decay (usually one or two), over every parameter
    // with a gradient this step
    std::map<double, std::vector<const Slot*>> by_decay;
    for (const Slot& s : slots_) by_decay[s.weight_decay].push_back(&s);
    for (const auto& [wd, slots] : by_decay) {
      std::vector<Tensor> w, g, m;
      for (const Slot* s : slots) {
        Tensor grad = host.grad(s->param);
        if (!grad) continue;
        w.push_back(host.value(s->param));  // fp32 master, updated in place
        g.push_back(std::move(grad));
        m.push_back(s->m);
      }
      if (w.empty()) continue;
      host.foreach_axpby_(m, momentum_, g, st.grad_scale);      // m = mu m + scale g
      host.foreach_axpby_(w, 1.0 - st.lr * wd, m, -st.lr);     // w = (1 - lr wd) w - lr m
    }
  }

  void save_state(Host& host, eng_state st) override {
    for (const Slot& s : slots_) host.state_put(st, s.name + ".momentum_buffer", s.m);
  }
  void load_state(Host& host, eng_state st) override {
    for (Slot& s : slots_) {
      Tensor saved = host.state_try_get(st, s.name + ".momentum_buffer");
      if (saved) host.copy_(s.m, saved);  // absent: a parameter new since the checkpoint starts at zero
    }
  }
  double state_bytes_per_element() override { return 4.0; }

 private:
  struct Slot {
    Param param;
    std::string name;
    double weight_decay;
    Tensor m;  // momentum buffer, fp32, shaped like the parameter
  };

  double momentum_ = 0.9;
  std::vector<Slot> slots_;
};

}  // namespace

ENGINE_REGISTER_OPTIMIZER(SgdMomentum, "sgd_momentum", "0.1.0",
                          "SGD with momentum and decoupled weight decay", kSchema,
                          ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA)
