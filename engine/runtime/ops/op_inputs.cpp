#include "engine/runtime/ops/op_inputs.hpp"

#include "engine/core/error.hpp"
#include "kernels/cpu/cast.hpp"

namespace engine::rt::ops::detail {

cpu::ThreadPool& cpu_pool(const Tensor& t, const char* op) {
  cpu::ThreadPool* pool = t.device().thread_pool();
  if (t.device().type() != DeviceType::CPU || !pool)
    fail(
        "{}: input {} is on {}, but this build runs built-in ops on the CPU only (the CUDA kernels come with "
        "the "
        "CUDA backend)",
        op, t.describe(), device_type_name(t.device().type()));
  return *pool;
}

DType compute_dtype(const char* op, std::initializer_list<Tensor> floating) {
  bool any_f64 = false, any_other = false;
  for (const Tensor& t : floating) {
    if (!t.defined()) continue;
    if (!dtype_is_float(t.dtype()))
      fail("{}: input {} must be a floating tensor (f32, bf16, f16 or f64)", op, t.describe());
    (t.dtype() == ENG_F64 ? any_f64 : any_other) = true;
  }
  if (any_f64 && any_other)
    fail(
        "{}: inputs mix f64 with other floating types; convert them to one compute type (all f64, or "
        "f32/bf16/f16) first",
        op);
  return any_f64 ? ENG_F64 : ENG_F32;
}

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  if (t.device().type() != DeviceType::CPU) {
    out.copy_from(t);
    return out;
  }
  cpu::copy_strided(*t.device().thread_pool(), t.raw_data(), t.shape().begin(), t.strides().begin(), t.ndim(),
                    out.raw_data(), static_cast<int>(t.element_size()));
  return out;
}

Tensor convert(const Tensor& t, DType dtype) {
  Tensor c = contiguous(t);
  if (c.dtype() == dtype) return c;
  Tensor out = Tensor::empty(c.shape(), dtype, c.device());
  cpu::ThreadPool* pool = c.device().thread_pool();
  const int64_t n = c.numel();
  const DType from = c.dtype();
  if (pool) {
    // Converts with the pool when (from, to) is one of the float pairs the kernel knows; false otherwise.
    auto try_pair = [&](auto src_tag, auto dst_tag, DType src_t, DType dst_t) {
      using S = decltype(src_tag);
      using D = decltype(dst_tag);
      if (from != src_t || dtype != dst_t) return false;
      cpu::convert<S, D>(*pool, c.data<S>(), out.data<D>(), n);
      return true;
    };
    using cpu::Bf16;
    using cpu::F16;
    if (try_pair(Bf16{}, float{}, ENG_BF16, ENG_F32) || try_pair(F16{}, float{}, ENG_F16, ENG_F32) ||
        try_pair(float{}, Bf16{}, ENG_F32, ENG_BF16) || try_pair(float{}, F16{}, ENG_F32, ENG_F16) ||
        try_pair(float{}, double{}, ENG_F32, ENG_F64) || try_pair(double{}, float{}, ENG_F64, ENG_F32) ||
        try_pair(Bf16{}, double{}, ENG_BF16, ENG_F64) || try_pair(F16{}, double{}, ENG_F16, ENG_F64) ||
        try_pair(double{}, Bf16{}, ENG_F64, ENG_BF16) || try_pair(double{}, F16{}, ENG_F64, ENG_F16))
      return out;
  }
  out.copy_from(c);  // other pairs (integers, bf16 <-> f16): the generic element-wise conversion
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
