#include "engine/runtime/ops/broadcast.hpp"

#include <array>
#include <string>

#include "engine/core/error.hpp"

namespace engine::rt::ops::detail {

Dims broadcast_shape(const char* op, const Dims& a, const Dims& b) {
  const int n = a.ndim > b.ndim ? a.ndim : b.ndim;
  Dims out;
  out.ndim = n;
  for (int i = 0; i < n; ++i) {  // i counts from the last dim
    const int64_t da = i < a.ndim ? a[a.ndim - 1 - i] : 1, db = i < b.ndim ? b[b.ndim - 1 - i] : 1;
    if (da != db && da != 1 && db != 1)
      fail(
          "{}: shapes {} and {} do not broadcast: dim {} from the end is {} against {} (sizes must be equal or "
          "one of them 1)",
          op, a.str(), b.str(), i + 1, da, db);
    out[n - 1 - i] = da == 1 ? db : da;
  }
  return out;
}

Broadcast make_broadcast(const Dims& out, std::initializer_list<Dims> operands) {
  if (operands.size() > 3) fail("make_broadcast: at most three operands, got {}", operands.size());
  // Strides of each operand in the output's index space: contiguous strides where its dim equals the output's,
  // 0 where it is 1 (broadcast) or missing.
  std::array<std::array<int64_t, kMaxDims>, 3> st{};
  int k = 0;
  for (const Dims& s : operands) {
    int64_t run = 1;
    for (int d = out.ndim - 1; d >= 0; --d) {
      const int sd = d - (out.ndim - s.ndim);
      const int64_t size = sd >= 0 ? s[sd] : 1;
      st[static_cast<size_t>(k)][static_cast<size_t>(d)] = size == 1 && out[d] != 1 ? 0 : run;
      run *= size;
    }
    ++k;
  }
  // Merge dim d into d + 1 (the next inner one) while every operand is either contiguous across both or
  // broadcast along both; size-1 output dims are dropped.
  Broadcast bc;
  int m = 0;
  for (int d = 0; d < out.ndim; ++d) {
    if (out[d] == 1) continue;
    bool merge = m > 0;
    for (int j = 0; merge && j < k; ++j) {
      const int64_t outer = bc.stride[j][m - 1], inner = st[static_cast<size_t>(j)][static_cast<size_t>(d)];
      merge = (outer == 0 && inner == 0) || (inner != 0 && outer == inner * out[d]);
    }
    if (merge) {
      bc.shape[m - 1] *= out[d];
      for (int j = 0; j < k; ++j) bc.stride[j][m - 1] = st[static_cast<size_t>(j)][static_cast<size_t>(d)];
    } else {
      bc.shape[m] = out[d];
      for (int j = 0; j < k; ++j) bc.stride[j][m] = st[static_cast<size_t>(j)][static_cast<size_t>(d)];
      ++m;
    }
  }
  bc.ndim = m;
  return bc;
}

Tensor sum_to_shape(const Tensor& grad, const Dims& shape) {
  if (grad.shape() == shape) return grad;
  const KernelTable& kt = grad.device().kernels();
  const DType ct = grad.dtype();
  Tensor out = Tensor::empty(shape, ct, grad.device());
  if (out.numel() == 0) return out;
  if (grad.numel() == 0) {
    kt.fill(out, 0.0);
    return out;
  }
  if (shape.numel() == 1) {  // everything into one element: the device's total sum (in stat_dtype)
    Tensor s = Tensor::empty(Dims{}, stat_dtype(ct), grad.device());
    kt.sum_all(grad, s, false);
    kt.copy(out.view(Dims{}), s);
    return out;
  }
  // shape equal to grad's trailing dims (after dropping its leading 1s): the row sums
  int lead = 0;
  while (lead < shape.ndim && shape[lead] == 1) ++lead;
  bool trailing = shape.ndim - lead <= grad.ndim();
  for (int i = 0; trailing && i < shape.ndim - lead; ++i)
    trailing = shape[shape.ndim - 1 - i] == grad.dim(grad.ndim() - 1 - i);
  if (trailing) {
    kt.sum_rows(grad, out);
    return out;
  }
  kt.reduce_to(make_broadcast(grad.shape(), {shape}), grad, out);
  return out;
}

}  // namespace engine::rt::ops::detail
