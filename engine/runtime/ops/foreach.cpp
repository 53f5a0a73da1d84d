// The multi-tensor in-place updates (the op table's foreach_ entries): every list checked, the sources
// converted to the destinations' dtype, then one kernel table call for all of them (one launch per few dozen
// tensors on CUDA), so an optimizer step over many parameters is a few calls.
#include "engine/core/error.hpp"
#include "engine/runtime/ops/op_inputs.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt::ops {

namespace {

bool reads_y(ForeachOp op) { return op == ForeachOp::Addcmul || op == ForeachOp::Addcdiv; }

void check_source(const char* op, const char* list, size_t i, const Tensor& src, const Tensor& dst) {
  if (!src.defined()) fail("{}: {}[{}] is missing", op, list, i);
  if (!dtype_is_float(src.dtype())) fail("{}: {}[{}] {} must be a floating tensor", op, list, i, src.describe());
  if (src.shape() != dst.shape())
    fail("{}: {}[{}] {} does not have the shape of dst[{}] {}", op, list, i, src.describe(), i, dst.describe());
  if (&src.device() != &dst.device())
    fail("{}: {}[{}] {} and dst[{}] {} live on different devices", op, list, i, src.describe(), i,
         dst.describe());
}

}  // namespace

void foreach_update(const char* op, const ForeachArgs& args, const std::vector<Tensor>& dst,
                    const std::vector<Tensor>& x, const std::vector<Tensor>& y) {
  const size_t n = dst.size();
  if (x.size() != n)
    fail("{}: the lists differ in length: dst has {} tensors, x has {}; pass one x per dst", op, n, x.size());
  if (reads_y(args.op) && y.size() != n)
    fail("{}: the lists differ in length: dst has {} tensors, y has {}; pass one y per dst", op, n, y.size());
  if (args.op == ForeachOp::AddSign && !y.empty() && y.size() != n)
    fail("{}: the lists differ in length: dst has {} tensors, y has {} (pass one y per dst, or none)", op, n,
         y.size());
  if (args.op == ForeachOp::Axpby && !y.empty()) fail("{}: takes no y list", op);
  if (n == 0) return;
  const bool with_y = !y.empty();
  for (size_t i = 0; i < n; ++i) {
    const Tensor& d = dst[i];
    if (!d.defined()) fail("{}: dst[{}] is missing", op, i);
    if (!d.is_contiguous()) fail("{}: dst[{}] {} must be contiguous", op, i, d.describe());
    if (d.dtype() != dst[0].dtype())
      fail("{}: dst[{}] {} and dst[0] {} differ in dtype; keep the state of one call in one dtype (f32)", op, i,
           d.describe(), dst[0].describe());
    if (&d.device() != &dst[0].device())
      fail("{}: dst[{}] {} and dst[0] {} live on different devices", op, i, d.describe(), dst[0].describe());
    check_source(op, "x", i, x[i], d);
    if (with_y) check_source(op, "y", i, y[i], d);
  }
  const KernelTable& kt = dst[0].device().kernels();
  const DType dt = dst[0].dtype();
  if (!dtype_is_float(dt)) fail("{}: dst[0] {} must be a floating tensor", op, dst[0].describe());
  detail::require(kt, Kernel::ForeachUpdate, dt, op);
  std::vector<Tensor> xs(n), ys(with_y ? n : 0);
  for (size_t i = 0; i < n; ++i) {
    xs[i] = detail::convert(x[i], dt);
    if (with_y) ys[i] = detail::convert(y[i], dt);
  }
  if (!with_y) ys.assign(n, Tensor());
  kt.foreach_update(args, static_cast<int64_t>(n), dst.data(), xs.data(), ys.data());
}

}  // namespace engine::rt::ops
