// engine/cpp/error.hpp: the one exception type of the SDK's C++ wrappers, and the edge that turns exceptions
// into ABI status codes. Nothing in this folder lets an exception cross the C ABI: every entry point the
// registration macros generate runs inside detail::guard.
#pragma once

#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "engine/abi/engine.h"

namespace engine::sdk {

// The name of a status code, for messages.
inline const char* status_name(eng_status status) noexcept {
  switch (status) {
    case ENG_OK:
      return "ok";
    case ENG_ERR_INVALID_ARGUMENT:
      return "invalid argument";
    case ENG_ERR_UNSUPPORTED:
      return "unsupported";
    case ENG_ERR_OUT_OF_MEMORY:
      return "out of memory";
    case ENG_ERR_IO:
      return "i/o error";
    case ENG_ERR_VERSION:
      return "ABI version mismatch";
    case ENG_ERR_NOT_FOUND:
      return "not found";
    case ENG_ERR_INTERNAL:
      return "internal error";
    case ENG_ERR_NONFINITE:
      return "non-finite value";
    default:
      return "unknown status";
  }
}

// Thrown by the wrappers when a host call fails (message from host->get_error) and by plugin code to fail an
// ABI call: the edge reports the message through host->set_error and returns status() to the engine.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, eng_status status = ENG_ERR_INVALID_ARGUMENT)
      : std::runtime_error(message), status_(status == ENG_OK ? ENG_ERR_INTERNAL : status) {}
  eng_status status() const noexcept { return status_; }

 private:
  eng_status status_;
};

namespace detail {

// Reports a failure of an ABI call: through set_error when there is a context, else as an error log line
// (host->log accepts a NULL context; see docs/ABI.md).
inline void report(const eng_host_api* api, const eng_ctx* ctx, eng_status status,
                   const char* message) noexcept {
  if (api == nullptr) return;
  if (ctx != nullptr && api->set_error != nullptr) {
    api->set_error(ctx, status, message);
  } else if (api->log != nullptr) {
    api->log(ctx, ENG_LOG_ERROR, message);
  }
}

// Runs f() and converts whatever it throws into a status code plus a message: the edge of every entry point.
template <typename F>
eng_status guard(const eng_host_api* api, const eng_ctx* ctx, F&& f) noexcept {
  try {
    f();
    return ENG_OK;
  } catch (const Error& e) {
    report(api, ctx, e.status(), e.what());
    return e.status();
  } catch (const std::bad_alloc&) {
    report(api, ctx, ENG_ERR_OUT_OF_MEMORY, "out of host memory in a plugin (std::bad_alloc)");
    return ENG_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    report(api, ctx, ENG_ERR_INTERNAL, e.what());
    return ENG_ERR_INTERNAL;
  } catch (...) {
    report(api, ctx, ENG_ERR_INTERNAL, "a plugin threw an exception of unknown type");
    return ENG_ERR_INTERNAL;
  }
}

// Reads a versioned struct written by the other side: zero-fills, copies min(its size, ours), so fields this
// plugin knows but an older engine did not send read as zero.
template <typename T>
T read_struct(const T* in) noexcept {
  T out;
  std::memset(static_cast<void*>(&out), 0, sizeof(T));
  if (in != nullptr) {
    size_t n = in->struct_size < sizeof(T) ? in->struct_size : sizeof(T);
    std::memcpy(static_cast<void*>(&out), static_cast<const void*>(in), n);
  }
  out.struct_size = static_cast<uint32_t>(sizeof(T));
  return out;
}

// Writes a versioned struct the other side sized (out->struct_size): copies min(its size, ours) and leaves
// struct_size at that minimum so the reader knows which fields were written.
template <typename T>
void write_struct(T* out, const T& value) noexcept {
  size_t n = out->struct_size < sizeof(T) ? out->struct_size : sizeof(T);
  uint32_t size = static_cast<uint32_t>(n);
  std::memcpy(static_cast<void*>(out), static_cast<const void*>(&value), n);
  out->struct_size = size;
}

}  // namespace detail
}  // namespace engine::sdk
