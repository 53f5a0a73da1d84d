// The host table's parameter entries: declaring, finding and describing parameters, their values and
// gradients, trainability, and attaching a PEFT adapter to a linear weight.
#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/host/entry_args.hpp"
#include "engine/host/entry_guard.hpp"
#include "engine/host/host_api.hpp"
#include "engine/host/host_entries.hpp"
#include "engine/host/param_info.hpp"
#include "engine/host/target_matcher.hpp"

namespace engine::host {

using rt::Tensor;

eng_status h_param_declare(const eng_ctx* ctx, const eng_param_decl* decl, eng_param* out) {
  return guarded(ctx, "param_declare", [&] {
    if (decl == nullptr || out == nullptr) fail("decl and out must not be NULL");
    *out = nullptr;
    eng_param_decl d{};
    std::memcpy(&d, decl, std::min<size_t>(decl->struct_size, sizeof d));
    if (d.name == nullptr) fail("the parameter declaration has no name");
    HostSession& s = session_of(ctx);
    rt::ParamDecl pd;
    pd.name = d.name;
    pd.shape = dims_of(d.ndim, d.shape);
    check_dtype(d.dtype);
    pd.dtype = d.dtype;
    pd.role = d.role;
    pd.flags = d.flags;
    pd.init = d.init;
    pd.init_arg = d.init_arg;
    if (d.tied_to != nullptr) pd.tied_to = d.tied_to;
    const int block = s.declaring() ? s.declaration_block() : s.tape().current_block();
    *out = param_handle(s.params().declare(pd, block));
  });
}

int64_t h_param_count(const eng_ctx* ctx) {
  HostSession* s = session_or_null(ctx);
  return s != nullptr ? static_cast<int64_t>(s->params().size()) : 0;
}

// Lookups without a status: failures return NULL (and leave a message where there is a context).

eng_param h_param_at(const eng_ctx* ctx, int64_t index) {
  HostSession* s = session_or_null(ctx);
  if (s == nullptr || index < 0 || index >= static_cast<int64_t>(s->params().size())) return nullptr;
  return param_handle(s->params().at(static_cast<size_t>(index)));
}

eng_param h_param_find(const eng_ctx* ctx, const char* name) {
  eng_param found = nullptr;
  guarded(ctx, "param_find", [&] {
    HostSession& s = session_of(ctx);
    if (name == nullptr) fail("the name is NULL");
    rt::Param* p = s.params().find(name);
    if (p != nullptr) found = param_handle(*p);
  });
  return found;
}

eng_status h_param_info(eng_param p, eng_param_info* out) {
  if (p == nullptr || out == nullptr) return ENG_ERR_INVALID_ARGUMENT;
  const uint32_t size = out->struct_size;
  if (size < sizeof(uint32_t)) return ENG_ERR_INVALID_ARGUMENT;
  eng_param_info info = param_info(param_of(p));  // no allocation: cannot throw
  std::memcpy(out, &info, std::min<size_t>(size, sizeof info));
  out->struct_size = static_cast<uint32_t>(std::min<size_t>(size, sizeof info));
  return ENG_OK;
}

eng_status h_param_value(const eng_ctx* ctx, eng_param p, eng_tensor* out) {
  return op1(ctx, "param_value", out,
             [&](HostSession& s, bool) { return s.params().value(param_arg(p, "param_value")); });
}

eng_status h_param_grad(const eng_ctx* ctx, eng_param p, eng_tensor* out) {
  return op1(ctx, "param_grad", out,
             [&](HostSession& s, bool) { return s.params().grad(param_arg(p, "param_grad")); });
}

eng_status h_param_set_trainable(const eng_ctx* ctx, eng_param p, int32_t trainable) {
  return guarded(ctx, "param_set_trainable", [&] {
    session_of(ctx).params().set_trainable(param_arg(p, "param_set_trainable"), trainable != 0);
  });
}

eng_status h_peft_attach(const eng_ctx* ctx, eng_param base, void* cookie) {
  return guarded(ctx, "peft_attach", [&] {
    session_of(ctx);
    rt::Param& p = param_arg(base, "peft_attach");
    if (p.decl.role != ENG_ROLE_LINEAR)
      fail("parameter '{}' is not a linear weight (role {}): adapters attach to linears only", p.name(),
           p.decl.role);
    p.peft_cookie = cookie;
  });
}

// ---- appended in ABI 1.1: parameter placement (zero3/fsdp) ---------------------------------------------------

eng_status h_param_set_local(const eng_ctx* ctx, eng_param p, int64_t shard) {
  return guarded(ctx, "param_set_local",
                 [&] { session_of(ctx).params().set_local(param_arg(p, "param_set_local"), shard); });
}

eng_status h_param_set_local_flat(const eng_ctx* ctx, const eng_param* params, int64_t count) {
  return guarded(ctx, "param_set_local_flat", [&] {
    if (count < 1) fail("param_set_local_flat: count is {}; pass at least one parameter", count);
    if (params == nullptr) fail("param_set_local_flat: params is NULL");
    std::vector<rt::Param*> members;
    members.reserve(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) members.push_back(&param_arg(params[i], "param_set_local_flat"));
    session_of(ctx).params().set_local_flat(members);
  });
}

eng_status h_param_set_split(const eng_ctx* ctx, eng_param p, int32_t dim) {
  return guarded(ctx, "param_set_split",
                 [&] { session_of(ctx).params().set_split(param_arg(p, "param_set_split"), dim); });
}

eng_status h_param_set_holder(const eng_ctx* ctx, eng_param p, int32_t holder) {
  return guarded(ctx, "param_set_holder",
                 [&] { session_of(ctx).params().set_holder(param_arg(p, "param_set_holder"), holder); });
}

eng_status h_param_gather(const eng_ctx* ctx, eng_param p) {
  return guarded(ctx, "param_gather", [&] { session_of(ctx).params().gather(param_arg(p, "param_gather")); });
}

eng_status h_param_release(const eng_ctx* ctx, eng_param p) {
  return guarded(ctx, "param_release", [&] { session_of(ctx).params().release(param_arg(p, "param_release")); });
}

eng_status h_param_reduce_grad(const eng_ctx* ctx, eng_param p) {
  return guarded(ctx, "param_reduce_grad",
                 [&] { session_of(ctx).params().reduce_grad(param_arg(p, "param_reduce_grad")); });
}

eng_status h_param_local(const eng_ctx* ctx, eng_param p, eng_tensor* value, eng_tensor* grad) {
  return guarded(ctx, "param_local", [&] {
    if (value != nullptr) *value = nullptr;
    if (grad != nullptr) *grad = nullptr;
    rt::ParamStore& store = session_of(ctx).params();
    rt::Param& param = param_arg(p, "param_local");
    if (value != nullptr) *value = make_handle(store.local(param));
    if (grad != nullptr) *grad = make_handle(store.local_grad(param));
  });
}

eng_status h_target_match(const eng_ctx* ctx, const char* spec_json, const char* name, int32_t* out) {
  return guarded(ctx, "target_match", [&] {
    if (spec_json == nullptr || name == nullptr || out == nullptr) fail("spec_json, name and out must not be NULL");
    *out = 0;
    const TargetMatcher m = TargetMatcher::parse(spec_json);
    const std::string module = TargetMatcher::module_of(name);
    bool block_linear = false;
    if (m.all_linear()) {
      const rt::Param* w = session_of(ctx).params().find(module + ".weight");
      const size_t dot = module.rfind('.');
      const std::string last = dot == std::string::npos ? module : module.substr(dot + 1);
      block_linear = w != nullptr && w->decl.role == ENG_ROLE_LINEAR && w->block >= 0 && last != "lm_head";
    }
    *out = m.matches(module, block_linear) ? 1 : 0;
  });
}

}  // namespace engine::host
