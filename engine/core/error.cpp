#include "engine/core/error.hpp"

namespace engine {

const char* status_name(eng_status status) noexcept {
  switch (status) {
    case ENG_OK: return "ok";
    case ENG_ERR_INVALID_ARGUMENT: return "invalid argument";
    case ENG_ERR_UNSUPPORTED: return "unsupported";
    case ENG_ERR_OUT_OF_MEMORY: return "out of memory";
    case ENG_ERR_IO: return "i/o error";
    case ENG_ERR_VERSION: return "ABI version mismatch";
    case ENG_ERR_NOT_FOUND: return "not found";
    case ENG_ERR_INTERNAL: return "internal error";
    case ENG_ERR_NONFINITE: return "non-finite value";
    default: return "unknown status";
  }
}

}  // namespace engine
