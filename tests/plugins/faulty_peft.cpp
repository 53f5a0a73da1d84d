// A test PEFT method that fails on purpose mid-run, for the fault tests (tests/e2e/faults_test.sh): like
// fake_peft (a trainable shift on each linear's output) until its linear hook has been called fail_at_call
// times, then:
//   fail_mode = "error"    throws engine::sdk::Error (the SDK returns ENG_ERR_UNSUPPORTED and the message)
//   fail_mode = "std"      throws std::runtime_error (caught at the ABI edge: ENG_ERR_INTERNAL + message)
//   fail_mode = "unknown"  throws an int (caught at the ABI edge by catch (...))
#include <stdexcept>
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
  "fail_at_call": {"type": "integer", "default": 1, "minimum": 1, "description": "fail on this call of the linear hook"},
  "fail_mode": {"type": "string", "default": "error", "enum": ["error", "std", "unknown"], "description": "how to fail"}
}})";

class FaultyPeft : public engine::sdk::Peft {
 public:
  FaultyPeft(Host&, const std::string& options_json) {
    const Json options = Json::parse(options_json);
    fail_at_ = options.get("fail_at_call", int64_t{1});
    mode_ = options.contains("fail_mode") ? options["fail_mode"].as_string() : "error";
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
    for (size_t i = 0; i < bases.size(); ++i) host.peft_attach(bases[i], &shifts_[i]);
  }
  Tensor linear(Host& host, void* cookie, const Tensor&, const Tensor& base_out) override {
    if (++calls_ == fail_at_) {
      const std::string message = "faulty_peft: injected failure at call " + std::to_string(calls_);
      if (mode_ == "std") throw std::runtime_error(message + " (std::runtime_error)");
      if (mode_ == "unknown") throw 42;
      throw engine::sdk::Error(message, ENG_ERR_UNSUPPORTED);
    }
    return host.add(base_out, host.param(*static_cast<Param*>(cookie)));
  }
  void save(Host&, const std::string&, const std::string&) override {}
  void load(Host&, const std::string&) override {}

 private:
  int64_t fail_at_ = 1;
  int64_t calls_ = 0;
  std::string mode_;
  std::vector<Param> shifts_;
};

}  // namespace

ENGINE_REGISTER_PEFT(FaultyPeft, FAKE_NAME, "0.0.1", "test PEFT method that fails on purpose", kSchema, FAKE_CAPS)
