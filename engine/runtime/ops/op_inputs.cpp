#include "engine/runtime/ops/op_inputs.hpp"

#include "engine/core/error.hpp"

namespace engine::rt::ops::detail {

const KernelTable& kernels_of(const char* op, std::initializer_list<Tensor> inputs) {
  const Tensor* first = nullptr;
  for (const Tensor& t : inputs) {
    if (!t.defined()) continue;
    if (!first) {
      first = &t;
    } else if (&t.device() != &first->device()) {
      fail("{}: inputs live on different devices ({} and {}); move them to one device first", op,
           first->describe(), t.describe());
    }
  }
  if (!first) fail("{}: no input is defined", op);
  return first->device().kernels();
}

DType compute_dtype(const KernelTable& kt, const char* op, std::initializer_list<Tensor> floating) {
  DType in[16];
  int n = 0;
  for (const Tensor& t : floating) {
    if (!t.defined()) continue;
    if (!dtype_is_float(t.dtype()))
      fail("{}: input {} must be a floating tensor (f32, bf16, f16 or f64)", op, t.describe());
    if (n < 16) in[n++] = t.dtype();
  }
  if (n == 0) fail("{}: no floating input is defined", op);
  return kt.compute_dtype(op, in, n);
}

void require(const KernelTable& kt, Kernel k, DType ct, const char* op) {
  if (const char* why = kt.unsupported(k, ct))
    fail("{}: the {} device cannot run {} in {}: {}", op, kt.device_name, kernel_name(k), dtype_name(ct),
         why);
}

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  t.device().kernels().copy(out, t);
  return out;
}

Tensor convert(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return contiguous(t);
  Tensor out = Tensor::empty(t.shape(), dtype, t.device());
  t.device().kernels().copy(out, t);
  return out;
}

Tensor as_compute(const Tensor& t, DType ct) { return convert(t, ct); }

Tensor saved_input(const Tensor& original, const Tensor& converted) {
  return original.dtype() == converted.dtype() ? converted : original;
}

Tensor as_index(const Tensor& t, const char* op, const char* what) {
  if (t.dtype() != ENG_I32 && t.dtype() != ENG_I64)
    fail("{}: {} must be an int32 or int64 tensor, got {}", op, what, t.describe());
  return convert(t, ENG_I32);
}

void expect_rank(const Tensor& t, int ndim, const char* op, const char* what) {
  if (!t.defined()) fail("{}: input {} is missing", op, what);
  if (t.ndim() != ndim) fail("{}: {} must have rank {}, got {}", op, what, ndim, t.describe());
}

}  // namespace engine::rt::ops::detail
