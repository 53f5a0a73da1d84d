// The CPU kernel table: binds every KernelTable entry (engine/runtime/kernel_table.hpp) to the kernels of
// kernels/cpu, which run on the device's thread pool in f32 (bf16/f16 storage converted by the ops) or f64
// (the finite-difference gradient checks). Everything here is host memory, so entries may read scalars
// directly.
#include <array>
#include <cmath>
#include <cstring>

#include "engine/core/error.hpp"
#include "engine/runtime/kernel_table.hpp"
#include "kernels/cpu/activation.hpp"
#include "kernels/cpu/attention.hpp"
#include "kernels/cpu/cast.hpp"
#include "kernels/cpu/cross_entropy.hpp"
#include "kernels/cpu/dropout.hpp"
#include "kernels/cpu/elementwise.hpp"
#include "kernels/cpu/embedding.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/pointwise.hpp"
#include "kernels/cpu/reduce.hpp"
#include "kernels/cpu/rmsnorm.hpp"
#include "kernels/cpu/rope.hpp"
#include "kernels/cpu/softmax.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace engine::rt {

namespace {

cpu::ThreadPool& pool_of(const Tensor& t) {
  cpu::ThreadPool* pool = t.device().thread_pool();
  if (t.device().type() != DeviceType::CPU || !pool)
    fail("cpu kernel table: tensor {} is not on the CPU", t.describe());
  return *pool;
}

// Calls f(float{}) or f(double{}) for a compute dtype.
template <typename F>
decltype(auto) dispatch(DType ct, F&& f) {
  if (ct == ENG_F64) return f(double{});
  if (ct != ENG_F32)
    fail("cpu kernel table: compute dtype {} (the CPU computes in f32 or f64)", dtype_name(ct));
  return f(float{});
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// ---- element conversion for the generic copy -------------------------------------------------------------

// Every element of src (any strides) into dst (any strides, same shape), converting through double.
void copy_elementwise(const Tensor& dst, const Tensor& src) {
  const Dims& shape = src.shape();
  const int64_t n = shape.numel();
  const size_t ss = src.element_size(), ds = dst.element_size();
  const auto* sbase = static_cast<const std::byte*>(src.raw_data());
  auto* dbase = static_cast<std::byte*>(dst.raw_data());
  const int nd = shape.ndim;
  std::array<int64_t, kMaxDims> idx{};
  for (int64_t k = 0; k < n; ++k) {
    int64_t so = 0, dof = 0;
    for (int i = 0; i < nd; ++i) {
      so += idx[static_cast<size_t>(i)] * src.strides()[i];
      dof += idx[static_cast<size_t>(i)] * dst.strides()[i];
    }
    const std::byte* sp = sbase + so * static_cast<int64_t>(ss);
    std::byte* dp = dbase + dof * static_cast<int64_t>(ds);
    if (src.dtype() == dst.dtype())
      std::memcpy(dp, sp, ss);
    else
      store_from_double(dp, dst.dtype(), load_as_double(sp, src.dtype()));
    for (int i = nd - 1; i >= 0; --i) {
      if (++idx[static_cast<size_t>(i)] < shape[i]) break;
      idx[static_cast<size_t>(i)] = 0;
    }
  }
}

// Converts n contiguous elements with the pool when (from, to) is one of the float pairs cpu::convert knows.
bool convert_contiguous(cpu::ThreadPool& pool, const void* src, DType from, void* dst, DType to, int64_t n) {
  auto try_pair = [&](auto src_tag, auto dst_tag, DType src_t, DType dst_t) {
    using S = decltype(src_tag);
    using D = decltype(dst_tag);
    if (from != src_t || to != dst_t) return false;
    cpu::convert<S, D>(pool, static_cast<const S*>(src), static_cast<D*>(dst), n);
    return true;
  };
  using cpu::Bf16;
  using cpu::F16;
  return try_pair(Bf16{}, float{}, ENG_BF16, ENG_F32) || try_pair(F16{}, float{}, ENG_F16, ENG_F32) ||
         try_pair(float{}, Bf16{}, ENG_F32, ENG_BF16) || try_pair(float{}, F16{}, ENG_F32, ENG_F16) ||
         try_pair(float{}, double{}, ENG_F32, ENG_F64) || try_pair(double{}, float{}, ENG_F64, ENG_F32) ||
         try_pair(Bf16{}, double{}, ENG_BF16, ENG_F64) || try_pair(F16{}, double{}, ENG_F16, ENG_F64) ||
         try_pair(double{}, Bf16{}, ENG_F64, ENG_BF16) || try_pair(double{}, F16{}, ENG_F64, ENG_F16);
}

void copy(const Tensor& dst, const Tensor& src) {
  const int64_t n = src.numel();
  if (n == 0) return;
  cpu::ThreadPool& pool = pool_of(dst);
  const bool sc = src.is_contiguous(), dc = dst.is_contiguous();
  if (src.dtype() == dst.dtype() && sc && dc) {
    std::memmove(dst.raw_data(), src.raw_data(), static_cast<size_t>(n) * src.element_size());
    return;
  }
  if (dc && src.dtype() == dst.dtype()) {
    cpu::copy_strided(pool, src.raw_data(), src.shape().begin(), src.strides().begin(), src.ndim(),
                      dst.raw_data(), static_cast<int>(src.element_size()));
    return;
  }
  if (dc && sc && convert_contiguous(pool, src.raw_data(), src.dtype(), dst.raw_data(), dst.dtype(), n))
    return;
  if (dc) {  // gather into src's dtype first, then convert with the pool where the pair allows it
    Tensor gathered = Tensor::empty(src.shape(), src.dtype(), src.device());
    cpu::copy_strided(pool, src.raw_data(), src.shape().begin(), src.strides().begin(), src.ndim(),
                      gathered.raw_data(), static_cast<int>(src.element_size()));
    if (convert_contiguous(pool, gathered.raw_data(), src.dtype(), dst.raw_data(), dst.dtype(), n)) return;
    copy_elementwise(dst, gathered);
    return;
  }
  copy_elementwise(dst, src);
}

void fill(const Tensor& dst, double value) {
  cpu::ThreadPool& pool = pool_of(dst);
  if (dst.dtype() == ENG_F32) {
    cpu::fill<float>(pool, dst.data<float>(), static_cast<float>(value), dst.numel());
  } else if (dst.dtype() == ENG_F64) {
    cpu::fill<double>(pool, dst.data<double>(), value, dst.numel());
  } else {
    const size_t es = dst.element_size();
    std::array<std::byte, 8> one{};
    store_from_double(one.data(), dst.dtype(), value);
    auto* p = static_cast<std::byte*>(dst.raw_data());
    for (int64_t i = 0; i < dst.numel(); ++i) std::memcpy(p + static_cast<size_t>(i) * es, one.data(), es);
  }
}

void fill_from_scalar(const Tensor& dst, const Tensor& scalar, double multiplier) {
  fill(dst, multiplier * load_as_double(static_cast<const std::byte*>(scalar.raw_data()), scalar.dtype()));
}

void axpby(const Tensor& dst, double a, const Tensor& src, double b) {
  cpu::ThreadPool& pool = pool_of(dst);
  Tensor s = src;
  if (src.dtype() != dst.dtype()) {
    s = Tensor::empty(src.shape(), dst.dtype(), src.device());
    copy(s, src);
  }
  dispatch(dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::axpby<T>(pool, dst.data<T>(), static_cast<T>(a), s.data<T>(), static_cast<T>(b), dst.numel());
  });
}

std::pair<int64_t, int64_t> outer_inner(const Tensor& a, const Tensor& b) {
  const int64_t inner = b.numel();
  return {inner ? a.numel() / inner : 0, inner};
}

void add_broadcast(const Tensor& a, const Tensor& b, const Tensor& out) {
  const auto [outer, inner] = outer_inner(a, b);
  dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::add_broadcast<T>(pool_of(a), a.data<T>(), b.data<T>(), out.data<T>(), outer, inner);
  });
}

void mul_broadcast(const Tensor& a, const Tensor& b, const Tensor& out) {
  const auto [outer, inner] = outer_inner(a, b);
  dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::mul_broadcast<T>(pool_of(a), a.data<T>(), b.data<T>(), out.data<T>(), outer, inner);
  });
}

void scale(const Tensor& x, double s, const Tensor& out) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::scale<T>(pool_of(x), x.data<T>(), static_cast<T>(s), out.data<T>(), x.numel());
  });
}

void silu(const Tensor& x, const Tensor& y) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::silu_forward<T>(pool_of(x), x.data<T>(), y.data<T>(), x.numel());
  });
}

void silu_backward(const Tensor& dy, const Tensor& x, const Tensor& dx) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::silu_backward<T>(pool_of(x), dy.data<T>(), x.data<T>(), dx.data<T>(), x.numel());
  });
}

void swiglu(const Tensor& gate, const Tensor& up, const Tensor& y) {
  dispatch(gate.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::swiglu_forward<T>(pool_of(gate), gate.data<T>(), up.data<T>(), y.data<T>(), gate.numel());
  });
}

void swiglu_backward(const Tensor& dy, const Tensor& gate, const Tensor& up, const Tensor& grad_gate,
                     const Tensor& grad_up) {
  dispatch(gate.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::swiglu_backward<T>(pool_of(gate), dy.data<T>(), gate.data<T>(), up.data<T>(), ptr<T>(grad_gate),
                            ptr<T>(grad_up), gate.numel());
  });
}

void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::dropout_apply<T>(pool_of(x), x.data<T>(), y.data<T>(), x.numel(), p, seed);
  });
}

void rms_norm(const Tensor& x, const Tensor& w, double eps, const Tensor& y, const Tensor& rstd) {
  const int64_t C = x.dim(-1), N = C ? x.numel() / C : 0;
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::rmsnorm_forward<T>(pool_of(x), x.data<T>(), w.data<T>(), N, C, eps, y.data<T>(), rstd.data<T>());
  });
}

void rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                       const Tensor& dx, const Tensor& dw) {
  const int64_t C = x.dim(-1), N = C ? x.numel() / C : 0;
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::rmsnorm_backward<T>(pool_of(x), dy.data<T>(), x.data<T>(), w.data<T>(), rstd.data<T>(), N, C,
                             dx.data<T>(), ptr<T>(dw));
  });
}

void rope(const Tensor& x, const Tensor& positions, const RopeArgs& args, const Tensor& y) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::rope_apply<T>(pool_of(x), x.data<T>(), positions.data<int32_t>(), args.inv_freq, x.dim(0), x.dim(1),
                       x.dim(2), x.dim(3), args.rotary_dim, args.inverse, y.data<T>());
  });
}

void softmax(const Tensor& x, const Tensor& y) {
  const int64_t C = x.dim(-1), N = C ? x.numel() / C : 0;
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::softmax_forward<T>(pool_of(x), x.data<T>(), y.data<T>(), N, C);
  });
}

void softmax_backward(const Tensor& dy, const Tensor& y, const Tensor& dx) {
  const int64_t C = y.dim(-1), N = C ? y.numel() / C : 0;
  dispatch(y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::softmax_backward<T>(pool_of(y), dy.data<T>(), y.data<T>(), dx.data<T>(), N, C);
  });
}

void embedding(const Tensor& table, const Tensor& ids, const Tensor& out) {
  cpu::ThreadPool& pool = pool_of(table);
  const int64_t C = table.dim(1), N = ids.numel();
  const int32_t* id = ids.data<int32_t>();
  switch (table.dtype()) {
    case ENG_BF16:
      cpu::embedding_forward<cpu::Bf16>(pool, table.data<cpu::Bf16>(), id, N, C, out.data<cpu::Bf16>());
      return;
    case ENG_F16:
      cpu::embedding_forward<cpu::F16>(pool, table.data<cpu::F16>(), id, N, C, out.data<cpu::F16>());
      return;
    case ENG_F32:
      cpu::embedding_forward<float>(pool, table.data<float>(), id, N, C, out.data<float>());
      return;
    case ENG_F64:
      cpu::embedding_forward<double>(pool, table.data<double>(), id, N, C, out.data<double>());
      return;
    default:
      fail("embedding: table dtype {} is not a floating type", dtype_name(table.dtype()));
  }
}

void embedding_backward(const Tensor& grad_out, const Tensor& ids, const Tensor& grad_table) {
  const int64_t V = grad_table.dim(0), C = grad_table.dim(1), N = ids.numel();
  dispatch(grad_table.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::embedding_backward<T>(pool_of(grad_out), grad_out.data<T>(), ids.data<int32_t>(), N, V, C,
                               grad_table.data<T>());
  });
}

int64_t first_bad_id(const Tensor& ids, int64_t vocab) {
  return cpu::check_ids(ids.data<int32_t>(), ids.numel(), vocab);
}

void gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c, const Tensor& bias) {
  if (c.dtype() != a.dtype() || b.dtype() != a.dtype())
    fail("gemm on the CPU: operands {}, {} and {} must share one dtype", a.describe(), b.describe(),
         c.describe());
  pool_of(a);
  dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* cp = c.data<T>();
    double beta = g.beta;
    for (int64_t i = 0; i < g.batch; ++i) {
      T* ci = cp + i * g.stride_c;
      if (bias.defined()) {  // C holds the bias on every row, then accumulates the product
        const T* bp = bias.data<T>();
        pool_of(a).parallel_for(g.M, 64, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) std::copy(bp, bp + g.N, ci + r * g.ldc);
        });
        beta = 1.0;
      }
      cpu::gemm<T>(g.trans_a, g.trans_b, g.M, g.N, g.K, static_cast<T>(g.alpha), a.data<T>() + i * g.stride_a,
                   g.lda, b.data<T>() + i * g.stride_b, g.ldb, static_cast<T>(beta), ci, g.ldc);
    }
  });
}

template <typename T>
void store_scalar(const Tensor& out, double value, bool accumulate) {
  T* p = out.data<T>();
  *p = accumulate ? static_cast<T>(*p + value) : static_cast<T>(value);
}

void sum_all(const Tensor& x, const Tensor& out, bool accumulate) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    store_scalar<T>(out, cpu::sum_all<T>(pool_of(x), x.data<T>(), x.numel()), accumulate);
  });
}

void sum_rows(const Tensor& x, const Tensor& out) {
  const int64_t cols = out.numel(), rows = cols ? x.numel() / cols : 0;
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::sum_rows<T>(pool_of(x), x.data<T>(), rows, cols, out.data<T>());
  });
}

void sum_rows_product(const Tensor& x, const Tensor& y, const Tensor& out) {
  const int64_t cols = out.numel(), rows = cols ? x.numel() / cols : 0;
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::sum_rows_product<T>(pool_of(x), x.data<T>(), y.data<T>(), rows, cols, out.data<T>());
  });
}

// Sums in double in element order, continuing from out's value when accumulating: over several tensors that
// is one running sum in parameter order (the global gradient norm of engine/train).
void sum_squares(const Tensor& x, const Tensor& out, bool accumulate) {
  double s = accumulate ? load_as_double(out.raw_data(), out.dtype()) : 0.0;
  if (x.dtype() == ENG_F32) {
    const float* d = x.data<float>();
    for (int64_t k = 0; k < x.numel(); ++k) s += static_cast<double>(d[k]) * static_cast<double>(d[k]);
  } else {
    const auto* p = static_cast<const std::byte*>(x.raw_data());
    for (int64_t k = 0; k < x.numel(); ++k) {
      const double v = load_as_double(p + static_cast<size_t>(k) * x.element_size(), x.dtype());
      s += v * v;
    }
  }
  dispatch(out.dtype(), [&](auto tag) { store_scalar<decltype(tag)>(out, s, false); });
}

void count_nonfinite(const Tensor& x, const Tensor& out, bool accumulate) {
  int64_t bad = 0;
  const auto* p = static_cast<const std::byte*>(x.raw_data());
  for (int64_t k = 0; k < x.numel(); ++k)
    bad += !std::isfinite(load_as_double(p + static_cast<size_t>(k) * x.element_size(), x.dtype()));
  int32_t* o = out.data<int32_t>();
  *o = static_cast<int32_t>(accumulate ? *o + bad : bad);
}

void cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index, double scale,
                   const Tensor& loss, const Tensor& lse) {
  dispatch(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const double l =
        cpu::cross_entropy_forward<T>(pool_of(logits), logits.data<T>(), labels.data<int32_t>(),
                                      logits.dim(0), logits.dim(1), ignore_index, scale, lse.data<T>());
    store_scalar<T>(loss, l, false);
  });
}

double scalar_value(const Tensor& t) {
  return load_as_double(static_cast<const std::byte*>(t.raw_data()), t.dtype());
}

void cross_entropy_backward(const Tensor& logits, const Tensor& labels, const Tensor& lse,
                            int64_t ignore_index, double scale, const Tensor& dloss, const Tensor& dlogits) {
  dispatch(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::cross_entropy_backward<T>(pool_of(logits), logits.data<T>(), labels.data<int32_t>(), lse.data<T>(),
                                   logits.dim(0), logits.dim(1), ignore_index,
                                   static_cast<T>(scale * scalar_value(dloss)), dlogits.data<T>());
  });
}

int64_t chunk_rows_for(int64_t chunk_rows, int64_t V, DType ct) {
  return chunk_rows > 0 ? chunk_rows : cpu::linear_ce_chunk_rows(V, static_cast<int64_t>(dtype_size(ct)));
}

void linear_cross_entropy(const Tensor& hidden, const Tensor& weight, const Tensor& labels,
                          int64_t ignore_index, double scale, int64_t chunk_rows, const Tensor& loss,
                          const Tensor& lse) {
  const int64_t N = hidden.dim(0), C = hidden.dim(1), V = weight.dim(0);
  dispatch(hidden.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const double l = cpu::linear_cross_entropy_forward<T>(
        pool_of(hidden), hidden.data<T>(), weight.data<T>(), labels.data<int32_t>(), N, C, V, ignore_index,
        scale, chunk_rows_for(chunk_rows, V, hidden.dtype()), lse.data<T>());
    store_scalar<T>(loss, l, false);
  });
}

void linear_cross_entropy_backward(const Tensor& hidden, const Tensor& weight, const Tensor& labels,
                                   const Tensor& lse, int64_t ignore_index, double scale, int64_t chunk_rows,
                                   const Tensor& dloss, const Tensor& grad_hidden,
                                   const Tensor& grad_weight) {
  const int64_t N = hidden.dim(0), C = hidden.dim(1), V = weight.dim(0);
  dispatch(hidden.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::linear_cross_entropy_backward<T>(
        pool_of(hidden), hidden.data<T>(), weight.data<T>(), labels.data<int32_t>(), lse.data<T>(), N, C, V,
        ignore_index, static_cast<T>(scale * scalar_value(dloss)),
        chunk_rows_for(chunk_rows, V, hidden.dtype()), ptr<T>(grad_hidden), ptr<T>(grad_weight));
  });
}

cpu::AttentionDims dims_of(const AttentionShape& s) {
  cpu::AttentionDims d;
  d.B = s.B;
  d.Tq = s.Tq;
  d.Tk = s.Tk;
  d.Hq = s.Hq;
  d.Hkv = s.Hkv;
  d.D = s.D;
  d.q_offset = s.q_offset;
  d.kv_batch_stride = s.kv_batch_stride;
  return d;
}

void attention(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
               const Tensor& segments, double scale, const Tensor& out, const Tensor& lse) {
  dispatch(q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_forward<T>(pool_of(q), dims_of(s), q.data<T>(), k.data<T>(), v.data<T>(),
                              ptr<int32_t>(segments), static_cast<T>(scale), out.data<T>(), ptr<T>(lse));
  });
}

void attention_backward(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& segments, double scale, const Tensor& out, const Tensor& lse,
                        const Tensor& grad_out, const Tensor& grad_q, const Tensor& grad_k,
                        const Tensor& grad_v) {
  dispatch(q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::attention_backward<T>(pool_of(q), dims_of(s), q.data<T>(), k.data<T>(), v.data<T>(),
                               ptr<int32_t>(segments), static_cast<T>(scale), out.data<T>(), lse.data<T>(),
                               grad_out.data<T>(), grad_q.data<T>(), grad_k.data<T>(), grad_v.data<T>());
  });
}

// ---- elementwise math --------------------------------------------------------------------------------------

void unary(UnaryOp op, const Tensor& x, double p0, double p1, const Tensor& y) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::unary<T>(pool_of(x), op, x.data<T>(), static_cast<T>(p0), static_cast<T>(p1), y.data<T>(), x.numel());
  });
}

void unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y, double p0, double p1,
                    const Tensor& dx) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::unary_backward<T>(pool_of(x), op, dy.data<T>(), x.data<T>(), ptr<T>(y), static_cast<T>(p0),
                           static_cast<T>(p1), dx.data<T>(), x.numel());
  });
}

void binary(BinaryOp op, const Broadcast& bc, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::binary<T>(pool_of(out), op, bc, a.data<T>(), b.data<T>(), out.data<T>());
  });
}

void where(const Broadcast& bc, const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::where<T>(pool_of(out), bc, cond.data<T>(), a.data<T>(), b.data<T>(), out.data<T>());
  });
}

void reduce_to(const Broadcast& bc, const Tensor& x, const Tensor& out) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cpu::reduce_to<T>(pool_of(x), bc, x.data<T>(), out.data<T>(), out.numel());
  });
}

void foreach_update(const ForeachArgs& args, int64_t n, const Tensor* dst, const Tensor* x, const Tensor* y) {
  for (int64_t i = 0; i < n; ++i) {
    dispatch(dst[i].dtype(), [&](auto tag) {
      using T = decltype(tag);
      cpu::foreach_update<T>(pool_of(dst[i]), args, dst[i].data<T>(), x[i].data<T>(), ptr<T>(y[i]),
                             dst[i].numel());
    });
  }
}

const char* unsupported(Kernel k, DType ct) {
  switch (k) {
    case Kernel::Copy:
    case Kernel::Fill:
    case Kernel::FillFromScalar:
    case Kernel::Embedding:
    case Kernel::FirstBadId:
    case Kernel::SumSquares:
    case Kernel::CountNonfinite:
      return nullptr;
    default:
      return ct == ENG_F32 || ct == ENG_F64
                 ? nullptr
                 : "the CPU computes in f32 or f64 (bf16/f16 inputs are converted)";
  }
}

DType compute_dtype(const char* op, const DType* in, int n) {
  bool any_f64 = false, any_other = false;
  for (int i = 0; i < n; ++i) (in[i] == ENG_F64 ? any_f64 : any_other) = true;
  if (any_f64 && any_other)
    fail(
        "{}: inputs mix f64 with other floating types; convert them to one compute type (all f64, or "
        "f32/bf16/f16) first",
        op);
  return any_f64 ? ENG_F64 : ENG_F32;
}

constexpr KernelTable kCpuTable = {
    "cpu",
    unsupported,
    compute_dtype,
    copy,
    fill,
    fill_from_scalar,
    axpby,
    add_broadcast,
    mul_broadcast,
    scale,
    silu,
    silu_backward,
    swiglu,
    swiglu_backward,
    dropout,
    rms_norm,
    rms_norm_backward,
    rope,
    softmax,
    softmax_backward,
    embedding,
    embedding_backward,
    first_bad_id,
    gemm,
    sum_all,
    sum_rows,
    sum_rows_product,
    sum_squares,
    count_nonfinite,
    cross_entropy,
    cross_entropy_backward,
    linear_cross_entropy,
    linear_cross_entropy_backward,
    attention,
    attention_backward,
    unary,
    unary_backward,
    binary,
    where,
    reduce_to,
    foreach_update,
};

}  // namespace

const KernelTable& cpu_kernel_table() { return kCpuTable; }

}  // namespace engine::rt
