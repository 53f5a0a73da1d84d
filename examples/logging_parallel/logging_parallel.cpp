// logging_parallel: an out-of-tree parallel strategy that checks the hook contract of docs/PLUGINS.md
// ("Parallel strategy") on every call it gets, counts the calls, and fails the run (through the host's
// set_error: the SDK's guard turns the thrown Error into it) naming the hook that broke the contract:
//   setup            once, before any other hook (the engine calls it after the parameters are declared and
//                    the PEFT plugin has attached, before the weights load), seeing the run's trainable set;
//   forward pass     before_block(i, FORWARD) / after_block(i, FORWARD) paired, i = 0, 1, .., blocks-1, no
//                    nesting (blocks = the largest declared ParamInfo::block + 1); an evaluation forward has
//                    no backward after it;
//   backward pass    only after a complete forward: before_block(i, BACKWARD) / after_block(i, BACKWARD)
//                    paired, i = blocks-1 .. 0;
//   grad_ready(p)    only for trainable parameters, only in a backward pass, and for a parameter declared in
//                    block b only while block b is open in BACKWARD; every trainable parameter gets it in
//                    every backward pass (once per accumulation into its gradient, so the same number of times
//                    in every pass);
//   before_step /    once per optimizer step, paired, outside any block, after at least one backward pass
//   after_step       (the same number of micro-batches in every step, or expect_micro_batches when set); at
//                    before_step every trainable parameter has a gradient.
// It places nothing. At world size > 1 it sums the trainable gradients over ranks in before_step (one
// all-reduce per parameter, in declaration order on every rank): the least a strategy with replicated
// parameters must do (the engine broadcasts rank 0's values once at the start, so the replicas then stay
// equal); it then trains like ddp.
// It has no save_state/load_state: the engine refuses a strategy that keeps state of its own, since it does not
// checkpoint one yet (built with -DLOGGING_PARALLEL_WITH_STATE=ON it overrides both, to show that refusal).
// It has no param_owner (the optimizer is not sharded); built with -DLOGGING_PARALLEL_WITH_OWNER=ON it has one
// that keeps every parameter on every rank (-1) and checks it is asked once per trainable parameter, after setup
// and before training.
//
// After every step it logs what it saw at info level and, with option `report`, writes the counts as JSON
// atomically through the host's file_write (the folder must exist; "{rank}" in the path is replaced by the
// rank, and without it only rank 0 writes).
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/cpp/parallel.hpp"

namespace {

using engine::sdk::Error;
using engine::sdk::Host;
using engine::sdk::Param;

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "log_every_hook": {"type": "boolean", "default": false, "description": "log each hook at info level (else debug)"},
  "report": {"type": "string", "default": "", "description": "after every step, write the hook counts as JSON to this file (its folder must exist; {rank} is replaced by the rank, else only rank 0 writes)"},
  "expect_micro_batches": {"type": "integer", "default": 0, "minimum": 0, "description": "fail unless every step has exactly this many backward passes (0: the number of the first step, the same in every step)"}
}})json";

struct Tracked {
  Param param;
  std::string name;
  int32_t block = -1;        // declared in this block, -1 outside blocks
  int64_t in_pass = 0;       // grad_ready calls in the current backward pass
  int64_t per_pass = -1;     // grad_ready calls per backward pass (learned in the first one)
  bool owner_asked = false;  // param_owner was called for it
};

class LoggingParallel : public engine::sdk::Parallel {
 public:
  LoggingParallel(Host&, const std::string& options_json) {
    const nlohmann::json o = nlohmann::json::parse(options_json.empty() ? "{}" : options_json);
    verbose_ = o.value("log_every_hook", false);
    report_ = o.value("report", std::string());
    expect_micro_ = o.value("expect_micro_batches", int64_t{0});
    if (expect_micro_ < 0) throw Error("logging_parallel: expect_micro_batches must be >= 0", ENG_ERR_INVALID_ARGUMENT);
  }

  void setup(Host& host) override {
    ++n_.setup;
    expect(n_.setup == 1, "setup", "called a second time");
    for (Param p : host.params()) {
      const engine::sdk::ParamInfo info = host.info(p);
      blocks_ = std::max(blocks_, info.block + 1);
      if (!info.trainable() || (info.flags & ENG_PARAM_TIED) != 0) continue;
      index_[p.get()] = tracked_.size();
      tracked_.push_back({p, info.name, info.block});
    }
    expect(blocks_ > 0, "setup", "the model declared no parameter inside a block (block_begin/block_end)");
    expect(!tracked_.empty(), "setup", "no trainable parameter is declared yet (PEFT attaches before setup)");
    log(host, "setup: " + std::to_string(host.param_count()) + " parameters (" + std::to_string(tracked_.size()) +
                  " trainable) in " + std::to_string(blocks_) + " blocks, rank " + std::to_string(host.rank()) +
                  " of " + std::to_string(host.world_size()));
  }

  void before_block(Host& host, int32_t block, eng_phase phase) override {
    const bool fwd = phase == ENG_PHASE_FORWARD;
    const std::string hook = std::string("before_block(") + std::to_string(block) + (fwd ? ", FORWARD)" : ", BACKWARD)");
    fwd ? ++n_.before_fwd : ++n_.before_bwd;
    expect(n_.setup == 1, hook, "before setup");
    expect(phase == ENG_PHASE_FORWARD || phase == ENG_PHASE_BACKWARD, hook, "unknown phase " + std::to_string(phase));
    expect(open_ < 0, hook, "while block " + std::to_string(open_) + " is open (blocks do not nest)");
    expect(!in_step_, hook, "between before_step and after_step");
    if (fwd) {
      if (block == 0) close_pass(hook);  // a new forward pass: the previous pass is over
      expect(stage_ == Stage::Forward && block == next_, hook,
             stage_ == Stage::Forward    ? "expected block " + std::to_string(next_) + " next (ascending)"
             : stage_ == Stage::Backward ? "the backward pass is at block " + std::to_string(next_)
                                         : std::string("the last pass is complete; a forward pass starts at block 0"));
    } else {
      if (stage_ == Stage::ForwardDone) {  // the backward pass of the forward just completed
        stage_ = Stage::Backward;
        next_ = blocks_ - 1;
      }
      expect(stage_ == Stage::Backward, hook, "without a complete forward pass before it");
      expect(block == next_, hook, "expected block " + std::to_string(next_) + " next (descending)");
    }
    expect(block < blocks_, hook, "the model declared " + std::to_string(blocks_) + " blocks");
    open_ = block;
    phase_ = phase;
    log(host, hook);
  }

  void after_block(Host& host, int32_t block, eng_phase phase) override {
    const bool fwd = phase == ENG_PHASE_FORWARD;
    const std::string hook = std::string("after_block(") + std::to_string(block) + (fwd ? ", FORWARD)" : ", BACKWARD)");
    fwd ? ++n_.after_fwd : ++n_.after_bwd;
    expect(open_ == block && phase_ == phase, hook,
           open_ < 0 ? "without its before_block" : "while block " + std::to_string(open_) + " is open");
    open_ = -1;
    if (fwd && ++next_ == blocks_) {
      stage_ = Stage::ForwardDone;
      ++n_.forward_passes;
    } else if (!fwd && --next_ < 0) {
      stage_ = Stage::BackwardDone;
      ++n_.backward_passes;
    }
    log(host, hook);
  }

  void grad_ready(Host& host, Param p) override {
    ++n_.grad_ready;
    const auto it = index_.find(p.get());
    const std::string hook = "grad_ready(" + host.info(p).name + ")";
    expect(it != index_.end(), hook, "for a parameter that is not trainable");
    Tracked& t = tracked_[it->second];
    expect(stage_ == Stage::ForwardDone || stage_ == Stage::Backward || stage_ == Stage::BackwardDone, hook,
           "outside a backward pass");
    if (t.block >= 0)
      expect(open_ == t.block && phase_ == ENG_PHASE_BACKWARD, hook,
             "the parameter belongs to block " + std::to_string(t.block) + ", but " +
                 (open_ < 0 ? std::string("no block") : "block " + std::to_string(open_)) + " is open in " +
                 (phase_ == ENG_PHASE_BACKWARD ? "backward" : "forward"));
    ++t.in_pass;
  }

  void before_step(Host& host) override {
    ++n_.before_step;
    expect(open_ < 0, "before_step", "inside block " + std::to_string(open_));
    expect(!in_step_, "before_step", "twice without after_step");
    close_pass("before_step");
    in_step_ = true;
    const int64_t micro = n_.backward_passes - backward_at_step_;
    expect(micro > 0, "before_step", "no backward pass since the last step");
    if (expect_micro_ > 0)
      expect(micro == expect_micro_, "before_step",
             std::to_string(micro) + " backward passes in this step, expect_micro_batches is " +
                 std::to_string(expect_micro_));
    else if (micro_per_step_ > 0)
      expect(micro == micro_per_step_, "before_step",
             std::to_string(micro) + " backward passes in this step, " + std::to_string(micro_per_step_) +
                 " in the first");
    micro_per_step_ = micro;
    backward_at_step_ = n_.backward_passes;
#ifdef LOGGING_PARALLEL_WITH_OWNER
    for (const Tracked& t : tracked_)
      expect(t.owner_asked, "before_step", "param_owner was never called for trainable " + t.name);
#endif
    for (const Tracked& t : tracked_) {
      const engine::sdk::Tensor g = host.grad(t.param);
      expect(static_cast<bool>(g), "before_step", t.name + " has no gradient");
      // Replicated parameters: the global batch's gradient is the sum of the ranks' (same order on every rank).
      if (host.world_size() > 1) host.all_reduce_sum(g);
    }
  }

  void after_step(Host& host) override {
    ++n_.after_step;
    expect(in_step_, "after_step", "without before_step");
    in_step_ = false;
    host.info("logging_parallel: step " + std::to_string(n_.after_step) + ": " + std::to_string(micro_per_step_) +
              " micro-batches, hooks so far " + counts().dump() + ", contract kept");
    write_report(host);
  }

#ifdef LOGGING_PARALLEL_WITH_OWNER
  // Every parameter stays with every rank (-1): the optimizer is replicated, but the engine takes the sharded
  // path (it frees no gradient, as no parameter belongs to another rank, and counts these gradients once in the norm).
  int32_t param_owner(Host& host, Param p) override {
    ++n_.param_owner;
    const auto it = index_.find(p.get());
    const std::string hook = "param_owner(" + host.info(p).name + ")";
    expect(n_.setup == 1, hook, "before setup");
    expect(it != index_.end(), hook, "for a parameter that is not trainable");
    expect(n_.before_fwd == 0, hook, "after training started");
    expect(!tracked_[it->second].owner_asked, hook, "asked twice");
    tracked_[it->second].owner_asked = true;
    return -1;
  }
#endif

#ifdef LOGGING_PARALLEL_WITH_STATE
  void save_state(Host&, eng_state) override { ++n_.save_state; }
  void load_state(Host&, eng_state) override { ++n_.load_state; }
#endif

 private:
  enum class Stage { Forward, ForwardDone, Backward, BackwardDone };

  struct Counts {
    int64_t setup = 0, before_fwd = 0, after_fwd = 0, before_bwd = 0, after_bwd = 0, grad_ready = 0;
    int64_t before_step = 0, after_step = 0, save_state = 0, load_state = 0, param_owner = 0;
    int64_t forward_passes = 0, backward_passes = 0;
  };

  // The pass before a new forward pass (or a step) is over: a forward must be complete; a backward must be
  // complete and have given every trainable parameter its gradient, as often as in the first pass.
  void close_pass(const std::string& hook) {
    if (stage_ == Stage::Forward) {
      expect(next_ == 0, hook, "the forward pass stopped after block " + std::to_string(next_ - 1) + " of " +
                                   std::to_string(blocks_));
    } else if (stage_ == Stage::Backward) {
      expect(false, hook, "the backward pass stopped before block " + std::to_string(next_));
    } else if (stage_ == Stage::BackwardDone) {
      for (Tracked& t : tracked_) {
        expect(t.in_pass > 0, hook, "no grad_ready for trainable " + t.name + " in the last backward pass");
        if (t.per_pass < 0) t.per_pass = t.in_pass;
        expect(t.in_pass == t.per_pass, hook,
               std::to_string(t.in_pass) + " grad_ready for " + t.name + " in the last backward pass, " +
                   std::to_string(t.per_pass) + " in the first");
      }
    }
    // An evaluation forward (ForwardDone) has no backward and no grad_ready; anything else is refused above.
    if (stage_ == Stage::ForwardDone)
      for (const Tracked& t : tracked_)
        expect(t.in_pass == 0, hook, "grad_ready for " + t.name + " without a backward pass");
    for (Tracked& t : tracked_) t.in_pass = 0;
    stage_ = Stage::Forward;
    next_ = 0;
  }

  nlohmann::json counts() const {
    return {{"setup", n_.setup},
            {"before_block", {{"forward", n_.before_fwd}, {"backward", n_.before_bwd}}},
            {"after_block", {{"forward", n_.after_fwd}, {"backward", n_.after_bwd}}},
            {"grad_ready", n_.grad_ready},
            {"before_step", n_.before_step},
            {"after_step", n_.after_step},
            {"save_state", n_.save_state},
            {"load_state", n_.load_state},
            {"param_owner", n_.param_owner}};
  }

  void write_report(Host& host) const {
    if (report_.empty()) return;
    std::string path = report_;
    const size_t at = path.find("{rank}");
    if (at != std::string::npos)
      path.replace(at, 6, std::to_string(host.rank()));
    else if (host.rank() != 0)
      return;
    nlohmann::json doc = counts();
    doc["rank"] = host.rank();
    doc["world_size"] = host.world_size();
    doc["blocks"] = blocks_;
    doc["trainable"] = tracked_.size();
    doc["forward_passes"] = n_.forward_passes;
    doc["backward_passes"] = n_.backward_passes;
    doc["micro_batches_per_step"] = micro_per_step_;
    host.write_json(path, doc);
  }

  static void expect(bool ok, const std::string& hook, const std::string& what) {
    if (!ok) throw Error("logging_parallel: hook contract broken at " + hook + ": " + what, ENG_ERR_INTERNAL);
  }
  void log(Host& host, const std::string& m) const { verbose_ ? host.info(m) : host.debug(m); }

  bool verbose_ = false;
  std::string report_;
  int64_t expect_micro_ = 0;

  Counts n_;
  int32_t blocks_ = 0;
  std::vector<Tracked> tracked_;
  std::map<eng_param, size_t> index_;
  Stage stage_ = Stage::Forward;
  int32_t next_ = 0;  // the block expected next in the current pass
  int32_t open_ = -1;
  eng_phase phase_ = ENG_PHASE_FORWARD;
  bool in_step_ = false;
  int64_t backward_at_step_ = 0;
  int64_t micro_per_step_ = 0;
};

}  // namespace

ENGINE_REGISTER_PARALLEL(LoggingParallel, "logging_parallel", "0.2.0",
                         "checks and counts the parallel hooks against docs/PLUGINS.md (sums gradients over ranks), "
                         "an out-of-tree example",
                         kSchema, ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA)
