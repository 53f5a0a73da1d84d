// How the engine's wrappers of plugin vtables (PluginQuantizer, PluginPeft) call into a plugin: a failing
// status becomes an engine::Error with the message the plugin left in the session's error slot, and a call
// that should have produced a tensor and did not is refused by name.
#pragma once

#include <spdlog/fmt/fmt.h>

#include <string>

#include "engine/core/error.hpp"
#include "engine/host/host_session.hpp"
#include "engine/host/tensor_handle.hpp"

namespace engine::host {

// Throws with the plugin's message when a call failed.
inline void check_call(HostSession& s, eng_status st, const std::string& plugin, const char* call) {
  if (st != ENG_OK) throw Error(fmt::format("{} plugin: {} failed: {}", plugin, call, s.error()), st);
}

// The tensor a call returned through `h`; throws naming the call when it returned none.
inline rt::Tensor returned_tensor(OwnedHandle& h, const std::string& plugin, const char* call) {
  if (h.get() == nullptr) fail("{} plugin: {} returned no tensor", plugin, call);
  return h.get()->tensor;
}

}  // namespace engine::host
