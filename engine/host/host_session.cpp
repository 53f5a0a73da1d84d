#include "engine/host/host_session.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "engine/core/error.hpp"

namespace engine::host {

HostSession::HostSession(rt::Device& device, uint64_t seed, int rank, int world_size, int local_rank)
    : device_(&device),
      rank_(rank),
      world_size_(world_size),
      local_rank_(local_rank),
      params_(std::make_unique<rt::ParamStore>(device, seed)),
      rng_(rt::Rng::derive(seed, "host.rng")) {
  params_->set_communicator(comm_);
}

HostSession::~HostSession() {
  params_.reset();  // frees quantizer states while the quantizer is still alive
  for (auto& [ptr, bytes] : allocations_) device_->deallocate(ptr, bytes);
}

eng_ctx HostSession::context(bool grad_enabled) {
  eng_ctx ctx{};
  ctx.struct_size = sizeof(eng_ctx);
  ctx.device_type = static_cast<eng_device_type>(device().type());
  ctx.device_index = device().index();
  ctx.grad_enabled = grad_enabled ? 1 : 0;
  ctx.rank = rank_;
  ctx.world_size = world_size_;
  ctx.local_rank = local_rank_;
  ctx.stream = device().stream();
  ctx.host_data = this;
  return ctx;
}

void HostSession::set_block_hooks(rt::BlockHooks* hooks) {
  hooks_ = hooks;
  tape_.set_block_hooks(hooks);
}

void HostSession::set_groups(rt::Communicator* model, rt::Communicator* data) {
  model_comm_ = model;
  data_comm_ = data;
  params_->set_split_communicator(model);
}

void HostSession::set_communicator(rt::Communicator* comm) {
  comm_ = comm != nullptr ? comm : &local_comm_;
  params_->set_communicator(comm_);
}

void HostSession::set_declaring(bool on) {
  declaring_ = on;
  declaration_block_ = -1;
}

void HostSession::block_begin(int block) {
  if (declaring_) {
    if (declaration_block_ >= 0)
      fail("block_begin({}) while declaring block {}: blocks do not nest", block, declaration_block_);
    if (block < 0) fail("block_begin({}): block indices start at 0", block);
    declaration_block_ = block;
    return;
  }
  tp_copy_memo_ = TpCopyMemo{};
  tape().block_begin(block);  // validates the nesting first
  // The parallel strategy's forward hook (gather the block's parameters) runs before the block's ops.
  if (hooks_ != nullptr) {
    try {
      hooks_->before_block(block, rt::BlockPhase::Forward);
    } catch (...) {
      tape().block_end(block);
      throw;
    }
  }
}

void HostSession::block_end(int block) {
  if (declaring_) {
    if (declaration_block_ != block)
      fail("block_end({}) while declaring block {}: every block_begin(i) needs block_end(i)", block,
           declaration_block_);
    declaration_block_ = -1;
    return;
  }
  tp_copy_memo_ = TpCopyMemo{};
  tape().block_end(block);
  if (hooks_ != nullptr) hooks_->after_block(block, rt::BlockPhase::Forward);
}

std::vector<rt::Tensor> HostSession::apply(bool grad_enabled, std::unique_ptr<rt::Node> node,
                                           std::vector<rt::Tensor> inputs) {
  if (!grad_enabled) {
    rt::NoGradGuard off(tape());
    return tape().apply(std::move(node), inputs);
  }
  return tape().apply(std::move(node), inputs);
}

rt::Tensor HostSession::apply1(bool grad_enabled, std::unique_ptr<rt::Node> node,
                               std::vector<rt::Tensor> inputs) {
  std::vector<rt::Tensor> out = apply(grad_enabled, std::move(node), std::move(inputs));
  if (out.size() != 1) fail("an op returned {} outputs where one was expected", out.size());
  return std::move(out[0]);
}

void HostSession::set_error(eng_status code, std::string message) {
  error_status_ = code;
  error_ = std::move(message);
}

void HostSession::clear_error() {
  error_status_ = ENG_OK;
  error_.clear();
}

eng_op_id HostSession::register_op(const eng_custom_op& op) {
  if (op.struct_size < offsetof(eng_custom_op, backward) + sizeof(op.backward))
    fail("op_register: eng_custom_op.struct_size {} is smaller than the ABI v1 struct ({} bytes)",
         op.struct_size, sizeof(eng_custom_op));
  if (op.name == nullptr || op.name[0] == '\0') fail("op_register: the op needs a name");
  const std::string name = op.name;
  for (const auto& def : custom_ops_)
    if (def->name == name)
      fail("op_register: an op named '{}' is already registered (names are unique per process)", name);
  if (op.forward == nullptr || op.backward == nullptr)
    fail("op_register: op '{}' needs both forward and backward", name);
  if (op.n_inputs < 0 || op.n_outputs < 1)
    fail("op_register: op '{}' declares {} inputs and {} outputs (needs >= 0 and >= 1)", name, op.n_inputs,
         op.n_outputs);
  // A plugin built before `flags` was appended passes a shorter struct: what it lacks reads as 0.
  eng_custom_op full{};
  std::memcpy(&full, &op, std::min<size_t>(op.struct_size, sizeof(eng_custom_op)));
  constexpr uint32_t kKnownFlags = ENG_CUSTOM_OP_BACKWARD_NO_INPUTS | ENG_CUSTOM_OP_BACKWARD_NO_OUTPUTS;
  if ((full.flags & ~kKnownFlags) != 0)
    fail("op_register: op '{}' sets unknown flags {:#x} (this engine knows ENG_CUSTOM_OP_BACKWARD_NO_INPUTS and "
         "ENG_CUSTOM_OP_BACKWARD_NO_OUTPUTS): rebuild the plugin against this engine's SDK, or upgrade the engine",
         name, full.flags & ~kKnownFlags);
  auto def = std::make_unique<CustomOpDef>();
  def->name = name;
  def->op = full;
  def->op.struct_size = sizeof(eng_custom_op);
  def->op.name = def->name.c_str();
  custom_ops_.push_back(std::move(def));
  return static_cast<eng_op_id>(custom_ops_.size());
}

const CustomOpDef& HostSession::custom_op(eng_op_id id) const {
  if (id == 0 || id > custom_ops_.size())
    fail("custom op id {} is not registered (register it with host->op_register first; {} ops registered)",
         id, custom_ops_.size());
  return *custom_ops_[id - 1];
}

void* HostSession::device_alloc(size_t bytes) {
  void* p = device_->allocate(bytes);
  if (p == nullptr && bytes > 0)
    fail_with(ENG_ERR_OUT_OF_MEMORY, "device_alloc: {} bytes are not available", bytes);
  if (p != nullptr) allocations_[p] = bytes;
  return p;
}

void HostSession::device_free(void* ptr) {
  if (ptr == nullptr) return;
  auto it = allocations_.find(ptr);
  if (it == allocations_.end()) fail("device_free: {} was not allocated by device_alloc of this run", ptr);
  device_->deallocate(ptr, it->second);
  allocations_.erase(it);
}

HostSession& session_of(const eng_ctx* ctx) {
  if (ctx == nullptr) fail("the context is NULL: pass the eng_ctx the engine gave you");
  if (ctx->struct_size < offsetof(eng_ctx, host_data) + sizeof(void*) || ctx->host_data == nullptr)
    fail("the context has no engine session (host_data): pass the eng_ctx the engine gave you unchanged");
  return *static_cast<HostSession*>(ctx->host_data);
}

}  // namespace engine::host
