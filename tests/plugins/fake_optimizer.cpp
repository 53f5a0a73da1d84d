// A test optimizer: plain SGD with weight decay through the host's in-place ops. Built in several variants
// (FAKE_NAME, FAKE_CAPS) so that loader and recipe tests have optimizers with and without
// ENG_OPT_CAP_SHARDED.
#include <string>
#include <vector>

#include "engine/cpp/json.hpp"
#include "engine/cpp/optimizer.hpp"

namespace {

using engine::sdk::Host;
using engine::sdk::Json;
using engine::sdk::Param;
using engine::sdk::Tensor;

#ifdef FAKE_BROKEN_SCHEMA
// a schema with a missing comma, as a hand-written one easily has (the loader warns about it)
constexpr char kSchema[] = R"({"type": "object" "properties": {}})";
#else
constexpr char kSchema[] = R"({
  "type": "object",
  "properties": {
    "lr": {"type": "number", "default": 0.001, "minimum": 0, "description": "learning rate"},
    "weight_decay": {"type": "number", "default": 0.0, "minimum": 0, "description": "decoupled weight decay"},
    "nesterov": {"type": "boolean", "default": false, "description": "Nesterov momentum"},
    "mode": {"type": "string", "default": "plain", "enum": ["plain", "signed"], "description": "update rule"},
    "betas": {"type": "array", "items": {"type": "number"}, "default": [0.9, 0.999], "description": "two betas"},
    "buckets": {"type": "integer", "default": 4, "minimum": 1, "maximum": 64, "description": "update buckets"}
  }
})";
#endif

class FakeSgd : public engine::sdk::Optimizer {
 public:
  FakeSgd(Host& host, const std::string& options_json) {
    Json o = Json::parse(options_json);
    weight_decay_ = o.get("weight_decay", 0.0);
    host.debug("fake optimizer created");
  }
  void add_param(Host&, Param param, const eng_param_group& group) override {
    params_.push_back(param);
    decay_.push_back(group.weight_decay);
  }
  void step(Host& host, const eng_optim_step& s) override {
    // Untaped update, as a third-party optimizer writes it (compiled with -Werror like every test plugin).
    engine::sdk::NoGrad no_grad(host);
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor g = host.grad(params_[i]);
      if (!g) continue;
      Tensor w = host.value(params_[i]);
      host.axpby_(w, 1.0 - s.lr * decay_[i], g, -s.lr * s.grad_scale);
    }
  }
  void save_state(Host&, eng_state) override {}
  void load_state(Host&, eng_state) override {}
  double state_bytes_per_element() override { return 0.0; }

 private:
  double weight_decay_ = 0.0;
  std::vector<Param> params_;
  std::vector<double> decay_;
};

}  // namespace

ENGINE_REGISTER_OPTIMIZER(FakeSgd, FAKE_NAME, "0.0.1", "test optimizer (plain SGD)", kSchema, FAKE_CAPS)
