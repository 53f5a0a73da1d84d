// A test PEFT method: one trainable (out) bias-like vector added to each target linear's output.
#include <string>
#include <vector>

#include "engine/cpp/json.hpp"
#include "engine/cpp/peft.hpp"

namespace {

using engine::sdk::Host;
using engine::sdk::Json;
using engine::sdk::Param;
using engine::sdk::Tensor;

constexpr char kSchema[] = R"({"type": "object", "properties": {
  "r": {"type": "integer", "default": 8, "minimum": 1, "description": "rank"},
  "alpha": {"type": "number", "default": 16, "description": "scaling numerator"},
  "target_modules": {"type": "array", "items": {"type": "string"}, "default": ["proj"], "description": "targets"}
}})";

class FakePeft : public engine::sdk::Peft {
 public:
  FakePeft(Host&, const std::string& options_json) {
    const Json options = Json::parse(options_json);  // kept alive: items() refers into it
    for (const Json& t : options["target_modules"].items())
      targets_.push_back(t.as_string());
  }
  void attach(Host& host) override {
    std::vector<Param> bases;
    for (Param p : host.params()) {
      engine::sdk::ParamInfo info = host.info(p);
      if (info.role != ENG_ROLE_LINEAR) continue;
      bases.push_back(p);
      shifts_.push_back(host.declare(
          {info.name + ".shift", {info.shape[0]}, ENG_F32, ENG_ROLE_ADAPTER, ENG_PARAM_TRAINABLE}));
    }
    // the base linear routes through this plugin; the cookie is its shift (shifts_ no longer grows)
    for (size_t i = 0; i < bases.size(); ++i) host.peft_attach(bases[i], &shifts_[i]);
  }
  Tensor linear(Host& host, void* cookie, const Tensor&, const Tensor& base_out) override {
    return host.add(base_out, host.param(*static_cast<Param*>(cookie)));
  }
  void save(Host&, const std::string&, const std::string&) override {}
  void load(Host&, const std::string&) override {}

 private:
  std::vector<std::string> targets_;
  std::vector<Param> shifts_;
};

}  // namespace

ENGINE_REGISTER_PEFT(FakePeft, FAKE_NAME, "0.0.1", "test PEFT method (output shift)", kSchema, FAKE_CAPS)
