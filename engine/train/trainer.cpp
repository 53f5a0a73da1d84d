#include "engine/train/trainer.hpp"

#include <spdlog/spdlog.h>

#include <charconv>
#include <csignal>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <string_view>
#include <cmath>
#include <limits>
#include <optional>

#include "engine/core/error.hpp"
#include "engine/runtime/state_dict.hpp"
#include "engine/runtime/kernel_table.hpp"
#include "engine/train/checkpoint_dir.hpp"
#include "engine/train/checkpoint_io.hpp"
#include "engine/train/forward_backward.hpp"
#include "engine/train/grad_norm.hpp"
#include "engine/train/lr_schedule.hpp"
#include "engine/train/memory_plan.hpp"
#include "engine/train/model_flops.hpp"
#include "engine/runtime/op_profile.hpp"
#include "engine/train/plan_inputs.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/train/nonfinite_guard.hpp"
#include "engine/train/progress.hpp"
#include "engine/train/tensorboard_writer.hpp"
#include "engine/train/trainer_state.hpp"

namespace engine::train {

namespace fs = std::filesystem;

namespace {

// Fault injection for the tests: ENGINE_FAULT_NONFINITE="loss:2,3" makes the loss of steps 2 and 3 NaN;
// "grad:4" fills the gradient of the first trainable parameter with +Inf after step 4's backward pass (so the
// global norm the guard sees is computed from a real non-finite gradient).
bool fault_at(const char* kind, int64_t step) {
  const char* spec = std::getenv("ENGINE_FAULT_NONFINITE");
  if (spec == nullptr) return false;
  std::string_view s(spec);
  const std::string prefix = std::string(kind) + ":";
  if (!s.starts_with(prefix)) return false;
  s.remove_prefix(prefix.size());
  while (!s.empty()) {
    const size_t comma = s.find(',');
    const std::string_view item = s.substr(0, comma);
    int64_t v = 0;
    if (std::from_chars(item.data(), item.data() + item.size(), v).ec == std::errc() && v == step) return true;
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return false;
}

void inject_nonfinite_faults(rt::ParamStore& params, int64_t step, PassResult& pass) {
  if (fault_at("loss", step)) pass.loss = std::numeric_limits<double>::quiet_NaN();
  if (!fault_at("grad", step)) return;
  for (size_t i = 0; i < params.size(); ++i) {
    rt::Param& p = params.at(i);
    if (p.tied() || !p.trainable()) continue;
    rt::Tensor g = params.grad(p);
    if (!g.defined()) continue;
    g.device().kernels().fill(g, std::numeric_limits<double>::infinity());
    return;
  }
}

// Fault injection for the launcher's restart test: ENGINE_FAULT_KILL="<rank>:<step>:<marker file>" makes the
// worker of that rank kill itself with SIGKILL (no clean-up, as a lost GPU or an OOM kill) when it reaches that
// step, once: it creates the marker first, and a restarted worker that finds the marker trains on.
void inject_kill_fault(int rank, int64_t step) {
  const char* spec = std::getenv("ENGINE_FAULT_KILL");
  if (spec == nullptr) return;
  const std::string_view s(spec);
  const size_t a = s.find(':'), b = a == std::string_view::npos ? a : s.find(':', a + 1);
  if (b == std::string_view::npos) return;
  int want_rank = -1;
  int64_t want_step = -1;
  std::from_chars(s.data(), s.data() + a, want_rank);
  std::from_chars(s.data() + a + 1, s.data() + b, want_step);
  const fs::path marker(std::string(s.substr(b + 1)));
  std::error_code ec;
  if (want_rank != rank || want_step != step || fs::exists(marker, ec)) return;
  std::FILE* f = std::fopen(marker.c_str(), "w");
  if (f != nullptr) std::fclose(f);
  spdlog::warn("ENGINE_FAULT_KILL: rank {} kills itself at step {}", rank, step);
  std::raise(SIGKILL);
}

// A word for a POSIX shell: as is when it has only safe characters, else in single quotes.
std::string shell_word(const std::string& w) {
  if (!w.empty() && w.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:@+,") ==
                        std::string::npos)
    return w;
  std::string q = "'";
  for (char c : w) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// The engine executable as this process was started from (scripts/setup.sh does not put it on PATH), so the
// "try it" line runs as printed.
std::string engine_executable() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec || exe.filename() != "engine" ? std::string("engine") : shell_word(exe.string());
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

ScheduleConfig schedule_of(const recipe::Recipe& r, int64_t total) {
  ScheduleConfig c;
  c.kind = parse_schedule_kind(r.scheduler.kind);
  c.lr = r.optimizer.lr;
  c.warmup_steps = r.scheduler.warmup_steps;
  c.warmup_ratio = r.scheduler.warmup_ratio;
  c.min_lr = r.scheduler.min_lr;
  c.total_steps = total;
  return c;
}

std::string describe(const LrSchedule& s) {
  const ScheduleConfig& c = s.config();
  return fmt::format("{} lr={} warmup={} min_lr={} total={}", schedule_kind_name(c.kind), c.lr,
                     s.warmup_steps(), c.min_lr, c.total_steps);
}

EvalMetrics run_eval(session::TrainingSession& session, DataPipeline& data, int64_t step) {
  auto batches = data.eval_batches(static_cast<int32_t>(session.recipe().train.micro_batch_size));
  PassResult r = evaluate_loss(session, batches);
  EvalMetrics m;
  m.step = step;
  m.tokens = r.label_tokens;
  m.loss = r.label_tokens > 0 ? r.loss / static_cast<double>(r.label_tokens)
                              : std::numeric_limits<double>::quiet_NaN();
  m.perplexity = std::exp(m.loss);
  return m;
}

// train.activation_checkpointing = "auto": the memory plan of this run (the model's config.json, the
// plugins' byte counts, the device's memory capped by train.max_memory) decides how many blocks recompute.
void resolve_auto_checkpointing(session::TrainingSession& session) {
  const recipe::Recipe& r = session.recipe();
  rt::Device& device = session.host().device();
  const nlohmann::json config = io::read_hf_config(r.model.path).json;
  double quant_bytes = 0.0;
  if (host::PluginQuantizer* q = session.quantizer(); q != nullptr && q->vtable().bytes_per_element != nullptr)
    quant_bytes = q->vtable().bytes_per_element(q->self());
  const PlanInputs in =
      plan_inputs_for(r, config, session.optimizer().state_bytes_per_element(), quant_bytes,
                      device.type() == rt::DeviceType::CUDA, static_cast<int64_t>(device.total_memory()));
  const int64_t n = in.checkpoint_blocks;
  session.host().tape().set_checkpoint_blocks(n);
  if (r.train.offload_kept_blocks > 0 && in.offload_kept_blocks != r.train.offload_kept_blocks) {
    session.host().tape().set_offload_kept_blocks(in.offload_kept_blocks, in.model.n_layers);
    spdlog::info("activation checkpointing auto: {} of the {} offloaded kept blocks (train.offload_kept_blocks) "
                 "are enough for the plan; the others stay on the device",
                 in.offload_kept_blocks, r.train.offload_kept_blocks);
  }
  const MemoryPlan plan = make_memory_plan(in);
  const int32_t layers = in.model.n_layers;
  if (!plan.fits())
    spdlog::warn("activation checkpointing auto: even at its least ({} of {} blocks recomputed; recomputing more would "
                 "not lower it) the plan needs {} of {}; lower train.micro_batch_size or data.max_seq_len",
                 n < 0 ? layers : n, layers, format_bytes(plan.total_bytes), format_bytes(in.device_memory));
  else
    spdlog::info("activation checkpointing auto: {} of {} blocks recompute (plan {} of {}{})",
                 n < 0 ? layers : n, layers, format_bytes(plan.total_bytes), format_bytes(in.device_memory),
                 r.train.max_memory_gib > 0 ? ", train.max_memory" : "");
}

}  // namespace

int64_t total_steps(const recipe::Recipe& r, uint64_t rows_per_epoch) {
  if (r.train.max_steps > 0) return r.train.max_steps;
  const int64_t rows_per_step = r.train.micro_batch_size * r.train.grad_accum;
  const int64_t per_epoch = std::max<int64_t>(1, static_cast<int64_t>(rows_per_epoch) / rows_per_step);
  return per_epoch * std::max<int64_t>(1, r.train.epochs);
}

TrainResult train(session::TrainingSession& session, DataPipeline& data, const TrainOptions& options) {
  const recipe::Recipe& r = session.recipe();
  host::HostSession& hs = session.host();
  rt::Communicator& comm = hs.communicator();
  const bool lead = session.rank() == 0;  // only rank 0 writes shared files, metrics and progress
  const int world = session.world_size();
  rt::Device& device = hs.device();
  const int64_t total = total_steps(r, data.rows_per_epoch());
  const LrSchedule schedule(schedule_of(r, total));
  NonfiniteGuard guard(r.train.max_nonfinite_steps);

  if (r.train.checkpoint_auto) resolve_auto_checkpointing(session);

  TrainResult result;
  result.total_steps = total;
  TrainerState state;
  state.total_steps = total;
  state.schedule = describe(schedule);
  state.weights = session.full_finetune() ? "full" : "adapter";

  if (auto dir = resolve_resume(r.train.output_dir, options.resume)) {
    TrainerState saved = load_checkpoint(session, *dir, options.allow_missing_optimizer_state);
    if (saved.schedule != state.schedule) {
      fail(
          "cannot resume from {}: it was trained with the schedule '{}', this recipe gives '{}'. Resume with "
          "the "
          "same recipe, or start over with --resume none (and another train.output_dir)",
          dir->string(), saved.schedule, state.schedule);
    }
    data.restore(saved.sampler);  // another world size: the global position is re-divided (sampler.hpp)
    hs.rng().set_state(saved.rng_state);
    guard.restore(saved.nonfinite_in_a_row, saved.nonfinite_total);
    state = saved;
    result.last_checkpoint = *dir;
    spdlog::info("resumed from {} at step {}/{}", dir->string(), state.step, total);
  }
  result.first_step = state.step;
  if (lead) fs::create_directories(r.train.output_dir);
  std::optional<MetricsLog> metrics;
  if (lead) metrics.emplace(r.train.output_dir / "metrics.jsonl", state.step);
  std::optional<TensorBoardWriter> tensorboard;
  if (lead && r.log.tensorboard) {
    tensorboard.emplace(r.train.output_dir / "runs");
    spdlog::info("TensorBoard events in {} (tensorboard --logdir {})", tensorboard->path().string(),
                 (r.train.output_dir / "runs").string());
  }
  auto log_eval = [&](const EvalMetrics& e) {
    if (metrics) metrics->write(e);
    if (tensorboard) tensorboard->scalars(e.step, {{"eval/loss", e.loss}, {"eval/perplexity", e.perplexity}});
  };
  std::FILE* quiet = lead ? nullptr : std::fopen("/dev/null", "w");
  Progress progress(lead ? options.progress_out : quiet, lead && options.live_progress, total, r.log.every);
  progress.start(state.step);
  if (lead && world > 1 && session.dp_size() == world)
    spdlog::info("{} ranks x micro_batch_size {} x grad_accum {} = effective batch of {} rows per step", world,
                 r.train.micro_batch_size, r.train.grad_accum,
                 int64_t(world) * r.train.micro_batch_size * r.train.grad_accum);
  else if (lead && world > 1)
    spdlog::info("{} ranks in {} data-parallel group(s) x micro_batch_size {} x grad_accum {} = effective batch of "
                 "{} rows per step",
                 world, session.dp_size(), r.train.micro_batch_size, r.train.grad_accum,
                 int64_t(session.dp_size()) * r.train.micro_batch_size * r.train.grad_accum);
  const double t_start = now_s();
  // MFU's denominator, measured on this device before the first step (CUDA); 0 leaves mfu out.
  const double ceiling = device.gemm_ceiling_flops();
  if (ceiling > 0) spdlog::info("GEMM ceiling of the device: {:.0f} TFLOP/s (bf16 8192^3, cuBLASLt)", ceiling / 1e12);

  // Saves the state after state.step. The data cursor and generator default to where they are now; a step that
  // failed passes the ones from before it, so that a resume runs that step again.
  auto checkpoint = [&](const nlohmann::json* cursor = nullptr, const uint64_t* rng_state = nullptr) {
    state.sampler = cursor != nullptr ? *cursor : data.cursor();
    state.rng_state = rng_state != nullptr ? *rng_state : hs.rng().state();
    state.nonfinite_in_a_row = guard.in_a_row();
    state.nonfinite_total = guard.total_skipped();
    // Parameters and optimizer state are replicated (ddp): rank 0 writes them, with the data cursor that
    // every rank shares (each is at the same position of its shard); the others wait until it is published.
    fs::path shards;
    if ((session.shards_optimizer() && world > 1) || session.places_params()) {
      // zero2, zero3: every rank writes its share of the optimizer state (zero3: with the layout of its flat
      // shards); rank 0 publishes once all are durable.
      shards = r.train.output_dir / ".optimizer-shards" / ("step-" + std::to_string(state.step));
      write_optimizer_shard(session, shards);
      comm.barrier();
    }
    // zero3: the weights are saved consolidated (every rank gathers what rank 0 writes), so `engine export`
    // and a resume on any world size read them as a single process wrote them.
    if (session.places_params()) session.pin_weights();
    struct Unpin {
      session::TrainingSession& s;
      ~Unpin() {
        if (s.places_params()) s.unpin_weights();
      }
    } unpin{session};
    if (lead) {
      try {
        result.last_checkpoint = save_checkpoint(session, state, shards, world);
      } catch (const Error& e) {
        // Nothing of the new checkpoint is visible (it is written aside and renamed only when complete), so
        // the previous one is what a resume uses; say so, with the cause.
        const std::string previous = result.last_checkpoint.empty()
                                         ? std::string("there is no earlier checkpoint of this run")
                                         : "the previous checkpoint " + result.last_checkpoint.string() +
                                               " is intact: fix the cause and run the same command again to "
                                               "resume from it";
        fail_with(e.status(), "saving the checkpoint of step {} failed: {}; {}", state.step, e.what(), previous);
      }
    }
    if (world > 1) {
      comm.barrier();
      if (!lead) result.last_checkpoint = resolve_resume(r.train.output_dir, "auto").value_or(fs::path());
    }
  };
  bool stop_agreed = false;  // every rank stops at the same step

  rt::OpProfile& profile = rt::OpProfile::instance();
  bool saved_at_last_step = false;
  while (state.step < total) {
    if (world == 1 ? options.stop_requested != nullptr && options.stop_requested->load() : stop_agreed) {
      progress.message(fmt::format("interrupted: saving a checkpoint at step {} and stopping", state.step));
      result.interrupted = true;
      break;
    }
    const int64_t step = state.step + 1;
    comm.set_step(step);
    device.reset_peak_memory();
    const double t0 = now_s();
    const nlohmann::json cursor_before = data.cursor();
    const uint64_t rng_before = hs.rng().state();
    PassResult pass;
    std::vector<data::Batch> micro;
    try {
      if (profile.active() && step == result.first_step + 2) profile.reset();  // the first step warms up
      {
        rt::HostTimer timer("data", "next");
        for (int64_t i = 0; i < r.train.grad_accum; ++i)
          micro.push_back(data.next(static_cast<int32_t>(r.train.micro_batch_size)));
      }
      inject_kill_fault(session.rank(), step);
      pass = forward_backward(session, micro);
    } catch (const Error& e) {
      // A plugin (or the data) failed before the optimizer ran: no weight changed, so the state after the last
      // completed step is saved (unless it already is) and the run stops with the cause.
      hs.params().zero_grads();
      // Said at once: saving needs the other ranks, which may be waiting on this one (a pipeline's neighbour).
      if (world > 1) spdlog::error("rank {}: step {} failed: {}", session.rank(), step, e.what());
      if (!saved_at_last_step && (state.step > result.first_step || result.last_checkpoint.empty()))
        checkpoint(&cursor_before, &rng_before);
      fail_with(e.status(),
                "step {} failed: {}. The run stopped; {} holds the state after step {}: fix the cause and run "
                "the same command again to resume from there",
                step, e.what(), result.last_checkpoint.string(), state.step);
    }
    if (session.parallel() != nullptr) session.parallel()->before_step();  // ddp: gradients summed here
    inject_nonfinite_faults(hs.params(), step, pass);
    double norm = 0;
    {
      rt::OpTimer timer(profile.op_device(&device), "grad_norm", "step");
      rt::HostTimer host_timer("grad_norm", "waits for the device");
      if (session.shards_optimizer() || session.places_params()) {
        // zero2: each rank keeps the reduced gradients of its own parameters only; zero3: the local shards of
        // every gradient. The norm is summed over ranks. A parameter a zero2-like strategy left to every rank
        // (param_owner -1) has its whole gradient on each: counted once.
        for (rt::Param* p : session.not_owned()) hs.params().grad_sink(*p).clear();
        const auto replicated = [&](const rt::Param& p) { return session.replicated(p); };
        rt::Tensor sq = rt::Tensor::from_vector(
            rt::Dims{1}, ENG_F64, rt::cpu_device(),
            std::vector<double>{grad_sum_squares(hs.params(), [&](const rt::Param& p) { return !replicated(p); })});
        comm.all_reduce_sum(sq);
        double s = 0;
        sq.copy_to_host(&s, sizeof s);
        // A tensor x data parallel mesh: every data-parallel replica holds the same slices (summed over the
        // data group already), so the sum over all ranks counts each slice dp_size times.
        if (session.model_parallel_size() > 1) s /= session.dp_size();
        norm = std::sqrt(s + grad_sum_squares(hs.params(), replicated));
      } else {
        norm = global_grad_norm(hs.params());
      }
    }
    const double lr = schedule.lr_at(step);
    double loss_for_verdict = pass.loss;
    if (world > 1) {
      // One verdict for all ranks: any rank's non-finite loss or norm skips the step everywhere, and a stop
      // signal to any rank stops every rank after this step.
      const bool stop_here = options.stop_requested != nullptr && options.stop_requested->load();
      rt::Tensor flags = rt::Tensor::from_vector(
          rt::Dims{2}, ENG_F64, rt::cpu_device(),
          std::vector<double>{std::isfinite(pass.loss) && std::isfinite(norm) ? 0.0 : 1.0, stop_here ? 1.0 : 0.0});
      comm.all_reduce_sum(flags);
      double f[2];
      flags.copy_to_host(f, sizeof f);
      if (f[0] > 0) loss_for_verdict = std::numeric_limits<double>::quiet_NaN();
      stop_agreed = f[1] > 0;
    }
    const StepVerdict verdict = guard.check(loss_for_verdict, norm);
    if (verdict == StepVerdict::Apply) {
      rt::OpTimer timer(profile.op_device(&device), "optimizer", "step");
      rt::HostTimer host_timer("optimizer", "host");
      try {
        session.optimizer().step(step, lr, clip_coefficient(norm, r.train.grad_clip));
      } catch (const Error& e) {
        // The optimizer may have updated part of the weights or its state: nothing of this step is saved.
        fail_with(e.status(),
                  "step {} failed in the optimizer: {}. The run stopped without saving (the weights may be partly "
                  "updated); {}",
                  step, e.what(),
                  result.last_checkpoint.empty()
                      ? std::string("no checkpoint of this run exists yet")
                      : "resume from " + result.last_checkpoint.string() + " with the same command");
      }
    }
    if (session.parallel() != nullptr) session.parallel()->after_step();
    {
      rt::OpTimer timer(profile.op_device(&device), "zero_grads", "step");
      hs.params().zero_grads();
    }
    state.step = step;
    saved_at_last_step = false;

    StepMetrics m;
    m.step = step;
    m.loss = pass.loss;
    m.lr = lr;
    m.grad_norm = norm;
    m.tokens = pass.label_tokens;
    const double dt = now_s() - t0;
    if (profile.host_phases() && step > result.first_step + 1) profile.add("step", "wall", dt);
    m.tokens_per_s = dt > 0 ? static_cast<double>(pass.input_tokens) / dt : 0.0;
    if (ceiling > 0 && dt > 0) {
      m.model_tflops = step_model_flops(session.model().info(), session.full_finetune(), micro) / dt / 1e12;
      m.mfu = *m.model_tflops * 1e12 / ceiling;
    }
    const rt::MemoryStats mem = device.memory_stats();
    m.mem_bytes = mem.peak_bytes;
    m.mem_reserved_bytes = mem.peak_reserved_bytes;
    result.peak_reserved_bytes = std::max(result.peak_reserved_bytes, mem.peak_reserved_bytes);
    m.skipped = verdict != StepVerdict::Apply;
    result.peak_mem_bytes = std::max(result.peak_mem_bytes, m.mem_bytes);
    result.losses.push_back(m.skipped ? std::numeric_limits<double>::quiet_NaN() : pass.loss);
    if (!m.skipped) {
      state.tokens_seen += pass.label_tokens;
      state.last_loss = pass.loss;
    }
    if (metrics && (step % r.log.every == 0 || step == total || m.skipped)) {
      metrics->write(m);
      if (tensorboard && !m.skipped) {
        tensorboard->scalars(step, {{"train/loss", m.loss},
                                    {"train/learning_rate", m.lr},
                                    {"train/grad_norm", m.grad_norm},
                                    {"train/tokens_per_s", m.tokens_per_s},
                                    {"train/memory_gib", static_cast<double>(m.mem_bytes) / (1 << 30)}});
      }
    }
    progress.step(m);

    if (verdict == StepVerdict::Stop) {
      result.stopped_nonfinite = true;
      progress.message(
          fmt::format("stopping: {} steps in a row had a non-finite loss or gradient norm (the last: "
                      "loss {}, grad norm {}). The checkpoint keeps the last good weights; lower "
                      "optimizer.lr, set train.grad_clip, or check the data",
                      guard.in_a_row(), pass.loss, norm));
      break;
    }
    if (m.skipped)
      progress.message(fmt::format("step {}: non-finite loss or gradient norm, step skipped ({} in a row)",
                                   step, guard.in_a_row()));
    if (r.train.eval_every > 0 && data.has_eval() && step % r.train.eval_every == 0) {
      // zero3: every rank gathers the whole model first, so that rank 0 evaluates alone without collectives.
      // Split parameters (tp): every rank evaluates (the linear seam sums over the ranks); rank 0 logs. A
      // pipeline (pp): every stage runs its blocks, the last computes the loss.
      if (session.shards_params()) session.pin_weights(true);
      if (session.splits_params() || session.pipeline() != nullptr) {
        const EvalMetrics e = run_eval(session, data, step);
        if (lead) {
          result.last_eval = e;
          log_eval(e);
          progress.eval(e);
        }
      } else if (lead) {
        result.last_eval = run_eval(session, data, step);  // rank 0 alone: the replicas are equal
        log_eval(*result.last_eval);
        progress.eval(*result.last_eval);
      }
      if (session.shards_params()) session.unpin_weights();
    }
    if (r.checkpoint.save_every > 0 && step % r.checkpoint.save_every == 0 && step < total) {
      checkpoint();
      saved_at_last_step = true;
    }
  }
  if ((world > 1 || session.parallel() != nullptr) && state.step > result.first_step) {
    // What each rank holds once a step is done (ddp: everything; zero2: its share of gradients and state;
    // zero3: its shards of parameters, gradients and state).
    int64_t grad_bytes = 0, state_bytes = 0;
    for (rt::Param* p : session.trainable()) {
      rt::Tensor g = hs.params().local_grad(*p);
      if (g.defined()) grad_bytes += static_cast<int64_t>(g.nbytes());
    }
    rt::StateDict st;
    session.optimizer().save_state(st);
    for (const auto& [key, t] : st.entries()) state_bytes += static_cast<int64_t>(t.nbytes());
    spdlog::info("rank {}: after the last step the allocator holds {} bytes; gradients {} bytes, optimizer state "
                 "{} bytes; parameters {} bytes",
                 session.rank(), device.memory_stats().current_bytes, grad_bytes, state_bytes,
                 hs.params().local_param_bytes());
    if (const session::TrainingSession::Layers* layers = session.layers())
      for (rt::Device* d : layers->devices) {
        const rt::MemoryStats m = d->memory_stats();
        spdlog::info("layers: device {}:{} holds {} bytes after the last step, {} bytes at its peak",
                     rt::device_type_name(d->type()), d->index(), m.current_bytes, m.peak_bytes);
      }
  }
  if (!saved_at_last_step &&
      (state.step > result.first_step || result.interrupted || result.last_checkpoint.empty())) {
    checkpoint();
  }
  // (the same decision on every rank: the loop evaluated at state.step exactly when eval_every divides it)
  if (data.has_eval() && !result.stopped_nonfinite && !result.interrupted && state.step > result.first_step &&
      !(r.train.eval_every > 0 && state.step % r.train.eval_every == 0)) {
    if (session.shards_params()) session.pin_weights(true);
    if (session.splits_params() || session.pipeline() != nullptr) {  // every rank evaluates (as in the loop)
      const EvalMetrics e = run_eval(session, data, state.step);
      if (lead) {
        result.last_eval = e;
        log_eval(e);
        progress.eval(e);
      }
    } else if (lead) {
      result.last_eval = run_eval(session, data, state.step);
      log_eval(*result.last_eval);
      progress.eval(*result.last_eval);
    }
    if (session.shards_params()) session.unpin_weights();
  }
  progress.finish();
  if (quiet != nullptr) std::fclose(quiet);
  if (profile.active() && state.step > result.first_step + 1)
    spdlog::info("{}", profile.report(state.step - result.first_step - 1));
  result.last_step = state.step;
  result.seconds = now_s() - t_start;
  result.nonfinite_skipped = guard.total_skipped();
  return result;
}

std::string format_summary(const session::TrainingSession& session, const TrainResult& res) {
  const recipe::Recipe& r = session.recipe();
  double first = std::numeric_limits<double>::quiet_NaN(), last = first;
  for (double l : res.losses) {
    if (std::isnan(l)) continue;
    if (std::isnan(first)) first = l;
    last = l;
  }
  if (res.last_step == res.first_step && !res.last_checkpoint.empty()) {
    return fmt::format(
        "nothing to train: {} already reached step {} of {}. Use --resume none (it starts over in "
        "the same output_dir) or another train.output_dir to train again\n",
        res.last_checkpoint.string(), res.last_step, res.total_steps);
  }
  std::string s = fmt::format("trained steps {}..{} of {} in {} | loss {:.4f} -> {:.4f}", res.first_step + 1,
                              res.last_step, res.total_steps, format_duration(res.seconds), first, last);
  if (res.last_eval)
    s += fmt::format(" | eval loss {:.4f} (perplexity {:.3f})", res.last_eval->loss,
                     res.last_eval->perplexity);
  s += fmt::format(" | peak memory {}", format_bytes(res.peak_mem_bytes));
  if (res.peak_reserved_bytes > 0) s += fmt::format(" ({} reserved)", format_bytes(res.peak_reserved_bytes));
  if (res.nonfinite_skipped > 0) s += fmt::format(" | {} non-finite steps skipped", res.nonfinite_skipped);
  s += "\n";
  if (!res.last_checkpoint.empty()) {
    const bool full = session.full_finetune();
    s += fmt::format("{} saved in {}\n", full ? "model" : "adapter", res.last_checkpoint.string());
    s += fmt::format("metrics in {}\n", (r.train.output_dir / "metrics.jsonl").string());
    if (full) {
      s += fmt::format("try it: {} generate --model {} --chat --prompt \"What color is a banana?\"\n",
                       engine_executable(), shell_word(res.last_checkpoint.string()));
    } else {
      s += fmt::format(
          "try it: {} generate --model {} --adapter {} --chat --prompt \"What color is a banana?\"\n",
          engine_executable(), shell_word(r.model.path.string()), shell_word(res.last_checkpoint.string()));
    }
    if (res.interrupted) {
      s += fmt::format(
          "interrupted at step {} of {}: run the same command again to continue from {} (--resume auto, the "
          "default)\n",
          res.last_step, res.total_steps, res.last_checkpoint.string());
    }
  }
  return s;
}

}  // namespace engine::train
