#include "engine/host/plugin_parallel.hpp"

#include <algorithm>
#include <cstddef>

#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"

namespace engine::host {

namespace {

eng_phase phase_of(rt::BlockPhase p) {
  return p == rt::BlockPhase::Forward ? ENG_PHASE_FORWARD : ENG_PHASE_BACKWARD;
}

}  // namespace

PluginParallel::PluginParallel(HostSession& session, const eng_host_api* host,
                               const eng_parallel_vtable* vtable, std::string name,
                               const std::string& options_json)
    : session_(&session), vt_(vtable), name_(std::move(name)) {
  if (vt_ == nullptr || vt_->struct_size < ENG_PARALLEL_VTABLE_SIZE_1_0 || vt_->create == nullptr ||
      vt_->setup == nullptr)
    fail("parallel plugin {}: its function table is missing, older than ABI v1, or lacks create/setup",
         name_);
  eng_ctx ctx = session.context(false);
  session.clear_error();
  check(vt_->create(host, &ctx, options_json.c_str(), &self_), "create");
}

PluginParallel::~PluginParallel() {
  if (session_->block_hooks() == this) session_->set_block_hooks(nullptr);
  for (size_t i = 0; i < session_->params().size(); ++i) {
    rt::Param& p = session_->params().at(i);
    if (p.root == &p && p.grad) p.grad->on_accumulated = nullptr;
  }
  if (vt_->destroy != nullptr) vt_->destroy(self_);
}

void PluginParallel::check(eng_status st, const char* call) {
  if (st != ENG_OK)
    throw Error(fmt::format("parallel plugin {}: {} failed: {}", name_, call, session_->error()), st);
}

void PluginParallel::setup() {
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check(vt_->setup(self_, &ctx), "setup");
  session_->set_block_hooks(this);
  if (vt_->grad_ready == nullptr) return;
  rt::ParamStore& store = session_->params();
  for (size_t i = 0; i < store.size(); ++i) {
    rt::Param& p = store.at(i);
    if (p.root != &p || !p.trainable()) continue;
    store.grad_sink(p).on_accumulated = [this, &p] {
      eng_ctx c = session_->context(false);
      session_->clear_error();
      check(vt_->grad_ready(self_, &c, param_handle(p)), "grad_ready");
    };
  }
}

bool PluginParallel::shards_optimizer() const {
  return vt_->struct_size >= offsetof(eng_parallel_vtable, param_owner) + sizeof(void*) && vt_->param_owner != nullptr;
}

int PluginParallel::param_owner(rt::Param& p) {
  if (!shards_optimizer()) return -1;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  const int32_t owner = vt_->param_owner(self_, &ctx, param_handle(p));
  const std::string err = session_->error();
  if (!err.empty()) throw Error(fmt::format("parallel plugin {}: param_owner failed: {}", name_, err));
  if (owner < -1 || owner >= ctx.world_size)
    fail("parallel plugin {}: param_owner gave rank {} for {} (ranks are 0..{}, or -1 for all)", name_, owner,
         p.name(), ctx.world_size - 1);
  return owner;
}

void PluginParallel::data_parallel(int& dp_rank, int& dp_size) {
  if (vt_->struct_size < offsetof(eng_parallel_vtable, data_parallel) + sizeof(void*) || vt_->data_parallel == nullptr)
    return;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  int32_t r = dp_rank, n = dp_size;
  check(vt_->data_parallel(self_, &ctx, &r, &n), "data_parallel");
  if (n < 1 || r < 0 || r >= n || ctx.world_size % n != 0)
    fail("parallel plugin {}: data_parallel gave group {} of {} for {} ranks (need 0 <= group < groups, and "
         "groups dividing the world size)",
         name_, r, n, ctx.world_size);
  dp_rank = r;
  dp_size = n;
}

std::optional<eng_pipeline_stage> PluginParallel::pipeline(const eng_model_info& model) {
  if (vt_->struct_size < offsetof(eng_parallel_vtable, pipeline) + sizeof(void*) || vt_->pipeline == nullptr)
    return std::nullopt;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  eng_pipeline_stage st{};
  st.struct_size = sizeof(st);
  check(vt_->pipeline(self_, &ctx, &model, &st), "pipeline");
  if (st.stages <= 1) return std::nullopt;
  if (st.stage < 0 || st.stage >= st.stages || st.first_block < 0 || st.last_block <= st.first_block ||
      st.last_block > model.n_layers || (st.stage == 0) != (st.first_block == 0) ||
      (st.stage == st.stages - 1) != (st.last_block == model.n_layers) || st.warmup < 0)
    fail("parallel plugin {}: pipeline gave stage {} of {} over blocks [{}, {}) with warmup {} for a model of {} "
         "blocks (need the first stage to start at block 0, the last to end at the last block, and warmup >= 0)",
         name_, st.stage, st.stages, st.first_block, st.last_block, st.warmup, model.n_layers);
  return st;
}

std::optional<LayerMap> PluginParallel::place_layers(const eng_model_info& model, int available,
                                                    int64_t device_bytes) {
  if (vt_->struct_size < offsetof(eng_parallel_vtable, place_layers) + sizeof(void*) || vt_->place_layers == nullptr)
    return std::nullopt;
  LayerMap out;
  out.block_device.assign(static_cast<size_t>(std::max(0, model.n_layers)), -1);
  out.param_device.assign(session_->params().size(), -1);
  eng_layer_map m{};
  m.struct_size = sizeof(m);
  m.available = available;
  m.device_bytes = device_bytes;
  m.devices = 1;
  m.n_layers = model.n_layers;
  m.block_device = out.block_device.data();
  m.n_params = static_cast<int64_t>(out.param_device.size());
  m.param_device = out.param_device.data();
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check(vt_->place_layers(self_, &ctx, &model, &m), "place_layers");
  if (m.devices < 1 || (available > 0 && m.devices > available))
    fail("parallel plugin {}: place_layers chose {} devices, {} can be driven here", name_, m.devices,
         available > 0 ? std::to_string(available) : std::string("any number >= 1 of"));
  out.devices = m.devices;
  if (out.devices == 1) return std::nullopt;
  int32_t prev = 0;
  for (size_t b = 0; b < out.block_device.size(); ++b) {
    const int32_t d = out.block_device[b];
    if (d < prev || d > prev + 1 || (b == 0 && d != 0) || d >= m.devices)
      fail("parallel plugin {}: place_layers put block {} on device {} (after device {}): blocks must go to devices "
           "0..{} in order, each device taking the next consecutive blocks",
           name_, b, d, prev, m.devices - 1);
    prev = d;
  }
  if (prev != m.devices - 1)
    fail("parallel plugin {}: place_layers chose {} devices but the blocks use {}", name_, m.devices, prev + 1);
  for (size_t i = 0; i < out.param_device.size(); ++i)
    if (out.param_device[i] < 0 || out.param_device[i] >= m.devices)
      fail("parallel plugin {}: place_layers put parameter {} on device {} of {}", name_,
           session_->params().at(i).name(), out.param_device[i], m.devices);
  return out;
}

void PluginParallel::before_block(int block, rt::BlockPhase phase) {
  if (vt_->before_block == nullptr) return;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check(vt_->before_block(self_, &ctx, block, phase_of(phase)), "before_block");
}

void PluginParallel::after_block(int block, rt::BlockPhase phase) {
  if (vt_->after_block == nullptr) return;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check(vt_->after_block(self_, &ctx, block, phase_of(phase)), "after_block");
}

void PluginParallel::before_step() {
  if (vt_->before_step == nullptr) return;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check(vt_->before_step(self_, &ctx), "before_step");
}

void PluginParallel::after_step() {
  if (vt_->after_step == nullptr) return;
  eng_ctx ctx = session_->context(false);
  session_->clear_error();
  check(vt_->after_step(self_, &ctx), "after_step");
}

}  // namespace engine::host
