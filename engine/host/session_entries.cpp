// The host table's entries that act on the session itself: logging, the error slot, the block seam and the
// run's generator.
#include <spdlog/spdlog.h>

#include "engine/core/error.hpp"
#include "engine/host/entry_args.hpp"
#include "engine/host/entry_guard.hpp"
#include "engine/host/host_entries.hpp"

namespace engine::host {

void h_log(const eng_ctx*, eng_log_level level, const char* message) {
  const char* m = message != nullptr ? message : "";
  try {
    switch (level) {
      case ENG_LOG_TRACE:
        spdlog::trace("{}", m);
        break;
      case ENG_LOG_DEBUG:
        spdlog::debug("{}", m);
        break;
      case ENG_LOG_INFO:
        spdlog::info("{}", m);
        break;
      case ENG_LOG_WARN:
        spdlog::warn("{}", m);
        break;
      default:
        spdlog::error("{}", m);
        break;
    }
  } catch (...) {  // a failing log sink must not take the plugin down
  }
}

void h_set_error(const eng_ctx* ctx, eng_status code, const char* message) {
  try {
    if (HostSession* s = session_or_null(ctx)) s->set_error(code, message != nullptr ? message : "");
  } catch (...) {
  }
}

const char* h_get_error(const eng_ctx* ctx) {
  HostSession* s = session_or_null(ctx);
  return s != nullptr ? s->error() : "";
}

eng_status h_block_begin(const eng_ctx* ctx, int32_t block) {
  return guarded(ctx, "block_begin", [&] { session_of(ctx).block_begin(block); });
}

eng_status h_block_end(const eng_ctx* ctx, int32_t block) {
  return guarded(ctx, "block_end", [&] { session_of(ctx).block_end(block); });
}

uint64_t h_rng_next_u64(const eng_ctx* ctx) {
  HostSession* s = session_or_null(ctx);
  return s != nullptr ? s->rng().next_u64() : 0;
}

}  // namespace engine::host
