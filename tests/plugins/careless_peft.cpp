// A careless PEFT method, as a new author writes it from the headers alone: IA3-style (out) scales on every
// linear of the decoder blocks, but it never freezes the base, and it saves and loads only its scales. Its
// option train_base lists base parameters it marks trainable (as modules_to_save would) and, carelessly,
// does not save either. The engine must make it train only the scales (it freezes the base itself) and refuse
// to save or resume a checkpoint that does not cover what it trains (tests/e2e/peft_contract_e2e_test).
#include <string>
#include <vector>

#include "engine/cpp/json.hpp"
#include "engine/cpp/peft.hpp"

namespace {

using engine::sdk::Host;
using engine::sdk::Json;
using engine::sdk::NoGrad;
using engine::sdk::Param;
using engine::sdk::State;
using engine::sdk::Tensor;

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "train_base": {"type": "array", "items": {"type": "string"}, "default": [], "description": "base parameters to train as well (never saved: the careless part)"}
}})json";

class CarelessPeft : public engine::sdk::Peft {
 public:
  CarelessPeft(Host&, const std::string& options_json) {
    const Json options = Json::parse(options_json);
    for (const Json& t : options["train_base"].items()) train_base_.push_back(t.as_string());
  }
  void attach(Host& host) override {
    std::vector<Param> bases;
    for (Param p : host.params()) {
      engine::sdk::ParamInfo info = host.info(p);
      if (info.role != ENG_ROLE_LINEAR || info.block < 0) continue;
      bases.push_back(p);
      scales_.push_back(host.declare({info.name + ".ia3_l", {info.shape[0]}, ENG_F32, ENG_ROLE_ADAPTER,
                                      ENG_PARAM_TRAINABLE, ENG_INIT_ONES, 0.0}));
    }
    for (size_t i = 0; i < bases.size(); ++i) host.peft_attach(bases[i], &scales_[i]);
    for (const std::string& name : train_base_) host.set_trainable(host.get(name), true);
  }
  // base_out (..., out) * l (out)
  Tensor linear(Host& host, void* cookie, const Tensor&, const Tensor& base_out) override {
    Tensor l = host.param(*static_cast<Param*>(cookie));
    if (l.dtype() != base_out.dtype()) l = host.cast(l, base_out.dtype());
    return host.mul(base_out, l);
  }
  void save(Host& host, const std::string& dir, const std::string&) override {
    State st = host.state_create();
    for (Param p : scales_) host.state_put(st.get(), host.info(p).name, host.value(p));
    host.write_safetensors(dir + "/adapter_model.safetensors", st, {{"format", "pt"}});
  }
  void load(Host& host, const std::string& dir) override {
    State st = host.read_safetensors(dir + "/adapter_model.safetensors");
    NoGrad no_grad(host);
    for (Param p : scales_) host.copy_(host.value(p), host.state_get(st.get(), host.info(p).name));
  }

 private:
  std::vector<std::string> train_base_;
  std::vector<Param> scales_;
};

}  // namespace

ENGINE_REGISTER_PEFT(CarelessPeft, FAKE_NAME, "0.0.1", "test PEFT method that neither freezes nor saves the base",
                     kSchema, FAKE_CAPS)
