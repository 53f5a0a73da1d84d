#include "engine/host/linear_seam.hpp"

#include <optional>

#include "engine/core/error.hpp"
#include "engine/host/tensor_parallel.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::host {

rt::Tensor param_input(HostSession& session, bool grad_enabled, rt::Param& p) {
  if (p.quantized()) return p.root->quantizer->dequantize(p.root->quant_state, ENG_F32);
  if (!grad_enabled) return session.params().value(p);
  return session.params().use(p, session.tape());
}

rt::Tensor linear(HostSession& session, bool grad_enabled, const rt::Tensor& x_in, rt::Param& weight,
                  rt::Param* bias) {
  rt::Tape& tape = session.tape();
  // The quantizer's and the PEFT plugin's own op calls see the tape's mode through their contexts.
  std::optional<rt::NoGradGuard> off;
  if (!grad_enabled) off.emplace(tape);
  // Tensor parallelism (docs/distributed.md, "tp"): a weight split along its output features (dim 0) takes
  // the replicated input through tp_copy (its gradient is summed over the ranks); one split along its input
  // features (dim 1) gives a partial product that tp_reduce sums over the ranks before the bias is added.
  const rt::Split& split = weight.root->placement.split;
  const int split_dim = split.applied && !split.gathered ? split.dim : -1;
  rt::Tensor x = x_in;
  if (split_dim == 0) {  // projections that share their input (q, k, v; gate, up) share one tp_copy
    HostSession::TpCopyMemo& memo = session.tp_copy_memo();
    if (memo.in.defined() && memo.in.impl() == x_in.impl() && memo.grad == tape.grad_enabled()) {
      x = memo.out;
    } else {
      x = tp_copy(session, tape.grad_enabled(), x_in);
      memo = HostSession::TpCopyMemo{x_in, x, tape.grad_enabled()};
    }
  }
  const rt::Dims ws = weight.compute_shape();
  if (ws.ndim != 2) fail("linear: weight '{}' has shape {}, expected (out, in)", weight.name(), ws.str());
  if (x.dim(-1) != ws[1])
    fail("linear: input {} has {} features but weight '{}' {} expects {}", x.describe(), x.dim(-1),
         weight.name(), ws.str(), ws[1]);
  rt::Tensor b;
  if (bias != nullptr) {
    if (bias->compute_shape() != rt::Dims{ws[0]})
      fail("linear: bias '{}' has shape {}, expected ({},) for weight '{}'", bias->name(),
           bias->compute_shape().str(), ws[0], weight.name());
    b = param_input(session, tape.grad_enabled(), *bias);
  }
  // A row-split linear adds its bias once, after the sum over the ranks.
  const rt::Tensor b_in = split_dim == 1 ? rt::Tensor() : b;
  rt::Tensor y;
  if (weight.quantized()) {
    y = weight.root->quantizer->linear(weight.root->quant_state, x);  // x (..., in) -> (..., out)
    if (b_in.defined()) y = session.apply1(tape.grad_enabled(), rt::ops::make_add(), {y, b_in});
  } else {
    rt::Tensor w = param_input(session, tape.grad_enabled(), weight);  // (out, in)
    y = session.apply1(tape.grad_enabled(), rt::ops::make_linear(), {x, w, b_in});
  }
  if (weight.peft_cookie != nullptr) {
    rt::Peft* peft = session.peft();
    if (peft == nullptr)
      fail("linear: parameter '{}' has a PEFT adapter attached but the run has no PEFT method",
           weight.name());
    y = peft->linear(weight.peft_cookie, x, y);
  }
  if (split_dim == 1) {
    y = tp_reduce(session, tape.grad_enabled(), y);
    if (b.defined()) y = session.apply1(tape.grad_enabled(), rt::ops::make_add(), {y, b});
  }
  return y;
}

}  // namespace engine::host
