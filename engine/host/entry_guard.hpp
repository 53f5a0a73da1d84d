// The ABI edge of every host-table and op-table entry: guarded() runs an entry's body, turns any exception
// into a status code and stores its message in the session's error slot (host->get_error), so nothing
// throws across the C ABI; op1() does the same for an entry that returns one new tensor handle.
#pragma once

#include <spdlog/fmt/fmt.h>

#include <cstddef>
#include <exception>
#include <new>
#include <utility>

#include "engine/abi/engine.h"
#include "engine/core/error.hpp"
#include "engine/host/host_session.hpp"
#include "engine/host/tensor_handle.hpp"

namespace engine::host {

// The session behind a context, or nullptr (for entries that must not throw or report).
inline HostSession* session_or_null(const eng_ctx* ctx) noexcept {
  if (ctx == nullptr || ctx->struct_size < offsetof(eng_ctx, host_data) + sizeof(void*)) return nullptr;
  return static_cast<HostSession*>(ctx->host_data);
}

inline eng_status report(const eng_ctx* ctx, eng_status code, const char* what,
                         const char* message) noexcept {
  try {
    if (HostSession* s = session_or_null(ctx)) s->set_error(code, fmt::format("{}: {}", what, message));
  } catch (...) {  // formatting failed (out of memory): the status code still goes back
  }
  return code;
}

template <typename F>
eng_status guarded(const eng_ctx* ctx, const char* what, F&& f) noexcept {
  try {
    f();
    return ENG_OK;
  } catch (const Error& e) {
    return report(ctx, e.status(), what, e.what());
  } catch (const std::bad_alloc&) {
    return report(ctx, ENG_ERR_OUT_OF_MEMORY, what, "out of memory");
  } catch (const std::exception& e) {
    return report(ctx, ENG_ERR_INTERNAL, what, e.what());
  } catch (...) {
    return report(ctx, ENG_ERR_INTERNAL, what, "unknown exception");
  }
}

// One-output op: out receives a new handle.
template <typename F>
eng_status op1(const eng_ctx* ctx, const char* what, eng_tensor* out, F&& f) noexcept {
  return guarded(ctx, what, [&] {
    if (out == nullptr) fail("the output pointer is NULL");
    *out = nullptr;
    HostSession& s = session_of(ctx);
    rt::Tensor r = f(s, ctx->grad_enabled != 0);
    *out = make_handle(std::move(r));
  });
}

}  // namespace engine::host
