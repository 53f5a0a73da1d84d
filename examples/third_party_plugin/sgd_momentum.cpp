// sgd_momentum: SGD with momentum and decoupled weight decay, as a third party would ship it.
//
//   m <- mu * m + grad_scale * g
//   w <- (1 - lr * wd) * w - lr * m
//
// On the CPU with fp32 contiguous tensors the update runs as one fused loop over the raw DLPack views; on any
// other device it goes through the host's in-place op axpby_ (two passes), so the plugin works wherever the
// engine does. The momentum buffers are saved and resumed through the state dictionary under
// "<parameter name>.momentum_buffer".
#include <string>
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
    for (Slot& s : slots_) {
      Tensor g = host.grad(s.param);
      if (!g) continue;
      Tensor w = host.value(s.param);  // fp32 master, updated in place
      if (fused_cpu(w, g, s.m)) {
        update_cpu(w, g, s.m, st, s.weight_decay);
      } else {
        host.axpby_(s.m, momentum_, g, st.grad_scale);              // m = mu m + scale g
        host.axpby_(w, 1.0 - st.lr * s.weight_decay, s.m, -st.lr);  // w = (1 - lr wd) w - lr m
      }
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

  static bool fused_cpu(const Tensor& w, const Tensor& g, const Tensor& m) {
    for (const Tensor* t : {&w, &g, &m}) {
      if (!t->is_cpu() || t->dtype() != ENG_F32 || !t->is_contiguous()) return false;
    }
    return true;
  }

  void update_cpu(const Tensor& w, const Tensor& g, const Tensor& m, const eng_optim_step& st,
                  double wd) const {
    float* wp = w.data<float>();
    const float* gp = g.data<float>();
    float* mp = m.data<float>();
    const int64_t n = w.numel();
    const float mu = static_cast<float>(momentum_), scale = static_cast<float>(st.grad_scale);
    const float lr = static_cast<float>(st.lr), decay = static_cast<float>(1.0 - st.lr * wd);
    for (int64_t i = 0; i < n; ++i) {
      mp[i] = mu * mp[i] + scale * gp[i];
      wp[i] = decay * wp[i] - lr * mp[i];
    }
  }

  double momentum_ = 0.9;
  std::vector<Slot> slots_;
};

}  // namespace

ENGINE_REGISTER_OPTIMIZER(SgdMomentum, "sgd_momentum", "0.1.0",
                          "SGD with momentum and decoupled weight decay", kSchema,
                          ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA)
