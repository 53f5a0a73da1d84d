// rt::Peft: the run's PEFT method as the engine sees it, the interface the linear seam
// (engine/host/linear_seam.hpp) calls to add an adapter's term to a linear's output. engine/host wraps the
// plugin's vtable (eng_peft_vtable + self) in PluginPeft (plugin_peft.hpp); the session creates one for the
// run and hands it to the HostSession. Tests implement it directly.
#pragma once

#include <string>

#include "engine/runtime/tensor.hpp"

namespace engine::rt {

class Peft {
 public:
  virtual ~Peft() = default;
  virtual std::string name() const = 0;
  // base_out = x W^T (+ b) already computed -> base_out + the adapter's term for the linear `cookie` marks.
  virtual Tensor linear(void* cookie, const Tensor& x, const Tensor& base_out) = 0;
};

}  // namespace engine::rt
