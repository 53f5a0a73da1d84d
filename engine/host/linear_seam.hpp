// The linear seam: how the engine resolves linear(x, weight, bias) for a model (ARCHITECTURE.md, seam 1).
//
//   base = quantized weight ? quantizer.linear(state, x) + b      (the quantizer records its own custom op)
//                           : linear node {x, W, b}               (W: a tape leaf feeding W's grad iff
//                           trainable)
//   out  = weight has a PEFT cookie ? peft.linear(cookie, x, base) : base
//
// Everything goes through the session's tape, so the backward of the whole composition is automatic. It lives
// in engine/host because it needs the run's plugins (HostSession); engine/session and the op table call it.
#pragma once

#include "engine/host/host_session.hpp"

namespace engine::host {

// x (..., in) -> (..., out). bias may be nullptr.
rt::Tensor linear(HostSession& session, bool grad_enabled, const rt::Tensor& x, rt::Param& weight,
                  rt::Param* bias);

// The value of a parameter as an op input: a dequantized copy (no gradient) when the quantizer holds it, else
// ParamStore::use (a tape leaf when trainable and grad is on).
rt::Tensor param_input(HostSession& session, bool grad_enabled, rt::Param& p);

}  // namespace engine::host
