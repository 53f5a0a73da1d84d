// rt::Quantizer: the run's quantizer as the engine sees it, the interface that the parameter store (which
// hands it the weights it takes) and the linear seam (engine/host/linear_seam.hpp) call. engine/host wraps
// the plugin's vtable (eng_quantizer_vtable + self) in PluginQuantizer (plugin_quantizer.hpp); the session
// creates one for the run and hands it to the HostSession. Tests implement it directly.
#pragma once

#include <string>

#include "engine/runtime/state_dict.hpp"
#include "engine/runtime/tensor.hpp"

namespace engine::rt {

struct Param;  // engine/runtime/param_store.hpp

class Quantizer {
 public:
  virtual ~Quantizer() = default;
  virtual std::string name() const = 0;
  // Whether this (frozen) parameter should be stored quantized.
  virtual bool takes(const Param& param) = 0;
  // value: the full-precision weight (out, in) -> the quantizer's storage for it (freed by free_state).
  virtual void* quantize(Param& param, const Tensor& value) = 0;
  // x (..., in) -> x W^T (..., out), W in quantized storage; differentiable in x (the plugin records a custom
  // op).
  virtual Tensor linear(void* state, const Tensor& x) = 0;
  // The weight back as a dense tensor of `dtype` (merge, export, a plugin asking for the raw value).
  virtual Tensor dequantize(void* state, DType dtype) = 0;
  virtual void free_state(void* state) noexcept = 0;
  // Pre-quantized checkpoints: whether `stored_name` belongs to the quantized storage of `param`, and the
  // state read from those tensors (st: the parameter's own name and every owned name, prefix: its name).
  virtual bool owns(const Param& param, const std::string& stored_name) {
    (void)param, (void)stored_name;
    return false;
  }
  virtual void* load_state(Param& param, StateDict& st, const std::string& prefix);
  // The quantized storage of one parameter into st under prefix (bitsandbytes' names for nf4).
  virtual void save_state(void* state, StateDict& st, const std::string& prefix);
};

}  // namespace engine::rt
