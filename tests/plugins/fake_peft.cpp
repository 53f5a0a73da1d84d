#include <filesystem>
// A test PEFT method: one trainable (out) bias-like vector added to each target linear's output.
// Built with FAKE_FAULTS (faulty_peft, for tests/e2e/faults_test.sh) it fails on purpose mid-run: once its
// linear hook has been called fail_at_call times it throws, as fail_mode says:
//   "error"    engine::sdk::Error (the SDK returns ENG_ERR_UNSUPPORTED and the message)
//   "std"      std::runtime_error (caught at the ABI edge: ENG_ERR_INTERNAL and the message)
//   "unknown"  an int (caught at the ABI edge by catch (...))
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

#ifdef FAKE_FAULTS
constexpr char kSchema[] = R"({"type": "object", "properties": {
  "target_modules": {"type": "array", "items": {"type": "string"}, "default": ["proj"], "description": "targets"},
  "fail_at_call": {"type": "integer", "default": 1, "minimum": 1, "description": "fail on this call of the linear hook"},
  "fail_mode": {"type": "string", "default": "error", "enum": ["error", "std", "unknown"], "description": "how to fail"}
}})";
#else
constexpr char kSchema[] = R"({"type": "object", "properties": {
  "r": {"type": "integer", "default": 8, "minimum": 1, "description": "rank"},
  "alpha": {"type": "number", "default": 16, "description": "scaling numerator"},
  "target_modules": {"type": "array", "items": {"type": "string"}, "default": ["proj"], "description": "targets"}
}})";
#endif

class FakePeft : public engine::sdk::Peft {
 public:
  FakePeft(Host&, const std::string& options_json) {
    const Json options = Json::parse(options_json);  // kept alive: items() refers into it
    for (const Json& t : options["target_modules"].items())
      targets_.push_back(t.as_string());
#ifdef FAKE_FAULTS
    fail_at_ = options.get("fail_at_call", int64_t{1});
    mode_ = options.contains("fail_mode") ? options["fail_mode"].as_string() : "error";
#endif
  }
  void attach(Host& host) override {
    std::vector<Param> bases;
    for (Param p : host.params()) {
      engine::sdk::ParamInfo info = host.info(p);
      if (info.role != ENG_ROLE_LINEAR) continue;
      bases.push_back(p);
      shifts_.push_back(host.declare(
          {info.name + ".shift", {info.shape[0]}, ENG_F32, ENG_ROLE_ADAPTER, ENG_PARAM_TRAINABLE}));
      shift_names_.push_back(info.name + ".shift");
    }
    // the base linear routes through this plugin; the cookie is its shift (shifts_ no longer grows)
    for (size_t i = 0; i < bases.size(); ++i) host.peft_attach(bases[i], &shifts_[i]);
  }
  Tensor linear(Host& host, void* cookie, const Tensor&, const Tensor& base_out) override {
#ifdef FAKE_FAULTS
    if (++calls_ == fail_at_) {
      const std::string message = "faulty_peft: injected failure at call " + std::to_string(calls_);
      if (mode_ == "std") throw std::runtime_error(message + " (std::runtime_error)");
      if (mode_ == "unknown") throw 42;
      throw engine::sdk::Error(message, ENG_ERR_UNSUPPORTED);
    }
#endif
    return host.add(base_out, host.param(*static_cast<Param*>(cookie)));
  }
  // Saves what it trains under the parameters' own names (the engine checks that a save covers them).
  void save(Host& host, const std::string& dir, const std::string&) override {
    engine::sdk::State st = host.state_create();
    for (size_t i = 0; i < shifts_.size(); ++i) host.state_put(st.get(), shift_names_[i], host.value(shifts_[i]));
    host.write_safetensors(dir + "/adapter_model.safetensors", st, {{"format", "pt"}});
  }
  // A folder without the file (an adapter_config.json alone, as the adapter-loader test writes) keeps the
  // initial shifts.
  void load(Host& host, const std::string& dir) override {
    if (!std::filesystem::exists(dir + "/adapter_model.safetensors")) return;
    engine::sdk::State st = host.read_safetensors(dir + "/adapter_model.safetensors");
    engine::sdk::NoGrad no_grad(host);
    for (size_t i = 0; i < shifts_.size(); ++i)
      host.copy_(host.value(shifts_[i]), host.state_get(st.get(), shift_names_[i]));
  }

 private:
  std::vector<std::string> targets_;
  std::vector<Param> shifts_;
  std::vector<std::string> shift_names_;
#ifdef FAKE_FAULTS
  int64_t fail_at_ = 1;
  int64_t calls_ = 0;
  std::string mode_;
#endif
};

}  // namespace

ENGINE_REGISTER_PEFT(FakePeft, FAKE_NAME, "0.0.1", "test PEFT method (output shift)", kSchema, FAKE_CAPS)
