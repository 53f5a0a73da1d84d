// logging_parallel: a parallel strategy that places nothing and reduces nothing (one process), but logs every
// hook and checks the order docs/PLUGINS.md ("Parallel strategy") promises, failing the step with the hook
// that broke it:
//   setup once, before any block hook;
//   forward:  before_block(i, FORWARD) then after_block(i, FORWARD), blocks ascending, no nesting;
//   backward: before_block(i, BACKWARD) then after_block(i, BACKWARD), blocks descending;
//   grad_ready(p) only for trainable parameters, at most once per parameter per step;
//   before_step then after_step once per optimizer step, outside any block.
// Status: the session of this checkout validates a [parallel] section but does not call a strategy yet, so
// the tests build and load-check this example (engine plugins describe) without training with it.
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "engine/cpp/parallel.hpp"

namespace {

using engine::sdk::Error;
using engine::sdk::Host;
using engine::sdk::Param;

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "log_every_hook": {"type": "boolean", "default": false, "description": "log each hook at info level (else debug)"}
}})json";

class LoggingParallel : public engine::sdk::Parallel {
 public:
  LoggingParallel(Host&, const std::string& options_json)
      : verbose_(nlohmann::json::parse(options_json.empty() ? "{}" : options_json).value("log_every_hook", false)) {}

  void setup(Host& host) override {
    expect(!set_up_, "setup called twice");
    set_up_ = true;
    log(host, "setup: " + std::to_string(host.param_count()) + " parameters, rank " + std::to_string(host.rank()) +
                  " of " + std::to_string(host.world_size()));
  }
  void before_block(Host& host, int32_t block, eng_phase phase) override {
    expect(set_up_, "before_block before setup");
    expect(open_ < 0, "before_block(" + std::to_string(block) + ") inside block " + std::to_string(open_));
    if (phase == phase_ && last_ >= 0)
      expect(phase == ENG_PHASE_FORWARD ? block > last_ : block < last_,
             "block " + std::to_string(block) + " after block " + std::to_string(last_) + " in the same " +
                 (phase == ENG_PHASE_FORWARD ? "forward" : "backward"));
    open_ = block;
    phase_ = phase;
    log(host, std::string("before_block ") + std::to_string(block) + (phase == ENG_PHASE_FORWARD ? " fwd" : " bwd"));
  }
  void after_block(Host& host, int32_t block, eng_phase phase) override {
    expect(open_ == block && phase_ == phase, "after_block(" + std::to_string(block) + ") without its before_block");
    last_ = block;
    open_ = -1;
    log(host, "after_block " + std::to_string(block));
  }
  void grad_ready(Host& host, Param p) override {
    const engine::sdk::ParamInfo info = host.info(p);
    expect(info.trainable(), "grad_ready for frozen parameter " + info.name);
    expect(ready_.insert(info.name).second, "grad_ready twice in one step for " + info.name);
  }
  void before_step(Host& host) override {
    expect(open_ < 0, "before_step inside block " + std::to_string(open_));
    expect(!in_step_, "before_step twice");
    in_step_ = true;
    log(host, "before_step: " + std::to_string(ready_.size()) + " gradients ready");
  }
  void after_step(Host& host) override {
    expect(in_step_, "after_step without before_step");
    in_step_ = false;
    ready_.clear();
    last_ = -1;
    host.info("logging_parallel: step " + std::to_string(++steps_) + " hooks in order");
  }

 private:
  static void expect(bool ok, const std::string& what) {
    if (!ok) throw Error("logging_parallel: hook order broken: " + what, ENG_ERR_INTERNAL);
  }
  void log(Host& host, const std::string& m) const { verbose_ ? host.info(m) : host.debug(m); }

  bool verbose_;
  bool set_up_ = false;
  bool in_step_ = false;
  int32_t open_ = -1;
  int32_t last_ = -1;
  eng_phase phase_ = ENG_PHASE_FORWARD;
  int64_t steps_ = 0;
  std::set<std::string> ready_;
};

}  // namespace

ENGINE_REGISTER_PARALLEL(LoggingParallel, "logging_parallel", "0.1.0",
                         "logs and checks the order of the parallel hooks (one process), an out-of-tree example",
                         kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA)
