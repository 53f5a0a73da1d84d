// The CUDA kernel table: binds every KernelTable entry (engine/runtime/kernel_table.hpp) to the launchers of
// kernels/cuda on the device's compute stream. Compute policy: f32 when every floating input is f32 (the
// exactness tests), else bf16 storage with fp32 statistics and accumulators; f64 is refused. Nothing here
// waits for the GPU or reads device memory on the host; temporary workspaces come from the device's
// stream-ordered caching allocator as short-lived tensors.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/runtime/devices/cuda/cuda_device.hpp"
#include "engine/runtime/kernel_table.hpp"
#include "kernels/cpu/cross_entropy.hpp"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/attention_cudnn.hpp"
#include "kernels/cuda/cast.cuh"
#include "kernels/cuda/cross_entropy.cuh"
#include "kernels/cuda/dropout.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/pointwise.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/softmax.cuh"

namespace engine::rt {

namespace {

using bf16 = __nv_bfloat16;

CudaDevice& cuda_of(const Tensor& t) {
  if (t.device().type() != DeviceType::CUDA)
    fail("cuda kernel table: tensor {} is not on a CUDA device", t.describe());
  return static_cast<CudaDevice&>(t.device());
}

cudaStream_t stream_of(const Tensor& t) { return cuda_of(t).compute_cuda_stream(); }

cuda::ElemType elem(DType t) {
  switch (t) {
    case ENG_F32:
      return cuda::ElemType::F32;
    case ENG_BF16:
      return cuda::ElemType::BF16;
    case ENG_F16:
      return cuda::ElemType::F16;
    case ENG_F64:
      return cuda::ElemType::F64;
    case ENG_I32:
      return cuda::ElemType::I32;
    case ENG_I64:
      return cuda::ElemType::I64;
    case ENG_U8:
      return cuda::ElemType::U8;
    default:
      fail("the CUDA kernels do not handle dtype {}", dtype_name(t));
  }
}

// Calls f(float{}) or f(bf16{}) for a compute dtype.
template <typename F>
decltype(auto) dispatch(DType ct, F&& f) {
  if (ct == ENG_F32) return f(float{});
  if (ct == ENG_BF16) return f(bf16{});
  fail("cuda kernel table: compute dtype {} (CUDA computes in bf16 or f32)", dtype_name(ct));
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// A scratch buffer of `bytes` on t's device, freed (stream-ordered) when the returned tensor dies.
Tensor workspace(const Tensor& t, size_t bytes) {
  return Tensor::empty({static_cast<int64_t>(std::max<size_t>(bytes, 1))}, ENG_U8, t.device());
}

// ---- data movement
// --------------------------------------------------------------------------------------------

void copy(const Tensor& dst, const Tensor& src) {
  if (src.numel() == 0) return;
  cuda::copy_convert(stream_of(dst), src.raw_data(), elem(src.dtype()), src.shape().begin(),
                     src.strides().begin(), src.ndim(), dst.raw_data(), elem(dst.dtype()),
                     dst.strides().begin());
}

void fill(const Tensor& dst, double value) {
  if (!dst.is_contiguous()) fail("fill: destination {} must be contiguous", dst.describe());
  cuda::fill(stream_of(dst), dst.raw_data(), elem(dst.dtype()), value, dst.numel());
}

void axpby(const Tensor& dst, double a, const Tensor& src, double b) {
  cuda::axpby(stream_of(dst), dst.raw_data(), elem(dst.dtype()), a, src.raw_data(), elem(src.dtype()), b,
              dst.numel());
}

// A one-element scalar as f32 on the device (a converted copy when it is f64).
Tensor as_f32_scalar(const Tensor& s) {
  if (s.dtype() == ENG_F32) return s;
  Tensor f = Tensor::empty(Dims{}, ENG_F32, s.device());
  copy(f, s);
  return f;
}

void fill_from_scalar(const Tensor& dst, const Tensor& scalar, double multiplier) {
  const Tensor s = as_f32_scalar(scalar);
  if (dst.dtype() == ENG_F32 || dst.dtype() == ENG_BF16) {
    dispatch(dst.dtype(), [&](auto tag) {
      using T = decltype(tag);
      cuda::fill_from_scalar<T>(stream_of(dst), dst.data<T>(), dst.numel(), s.data<float>(),
                                static_cast<float>(multiplier));
    });
    return;
  }
  Tensor tmp = Tensor::empty(dst.shape(), ENG_F32, dst.device());
  cuda::fill_from_scalar<float>(stream_of(dst), tmp.data<float>(), tmp.numel(), s.data<float>(),
                                static_cast<float>(multiplier));
  copy(dst, tmp);
}

// ---- elementwise
// ---------------------------------------------------------------------------------------------

std::pair<int64_t, int64_t> outer_inner(const Tensor& a, const Tensor& b) {
  const int64_t inner = b.numel();
  return {inner ? a.numel() / inner : 0, inner};
}

void add_broadcast(const Tensor& a, const Tensor& b, const Tensor& out) {
  const auto [outer, inner] = outer_inner(a, b);
  dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::add_broadcast<T>(stream_of(a), a.data<T>(), b.data<T>(), out.data<T>(), outer, inner);
  });
}

void mul_broadcast(const Tensor& a, const Tensor& b, const Tensor& out) {
  const auto [outer, inner] = outer_inner(a, b);
  dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::mul_broadcast<T>(stream_of(a), a.data<T>(), b.data<T>(), out.data<T>(), outer, inner);
  });
}

void scale(const Tensor& x, double s, const Tensor& out) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::scale<T>(stream_of(x), x.data<T>(), static_cast<float>(s), out.data<T>(), x.numel());
  });
}

void silu(const Tensor& x, const Tensor& y) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::silu_forward<T>(stream_of(x), x.data<T>(), y.data<T>(), x.numel());
  });
}

void silu_backward(const Tensor& dy, const Tensor& x, const Tensor& dx) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::silu_backward<T>(stream_of(x), dy.data<T>(), x.data<T>(), dx.data<T>(), x.numel());
  });
}

void swiglu(const Tensor& gate, const Tensor& up, const Tensor& y) {
  dispatch(gate.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::swiglu_forward<T>(stream_of(gate), gate.data<T>(), up.data<T>(), y.data<T>(), gate.numel());
  });
}

void swiglu_backward(const Tensor& dy, const Tensor& gate, const Tensor& up, const Tensor& grad_gate,
                     const Tensor& grad_up) {
  dispatch(gate.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::swiglu_backward<T>(stream_of(gate), dy.data<T>(), gate.data<T>(), up.data<T>(), ptr<T>(grad_gate),
                             ptr<T>(grad_up), gate.numel());
  });
}

void dropout(const Tensor& x, const Tensor& y, double p, uint64_t seed) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::dropout_apply<T>(stream_of(x), x.data<T>(), y.data<T>(), x.numel(), p, seed);
  });
}

// ---- normalisation, rotation, softmax
// ------------------------------------------------------------------------

void rms_norm(const Tensor& x, const Tensor& w, double eps, const Tensor& y, const Tensor& rstd) {
  const int64_t C = x.dim(-1), N = C ? x.numel() / C : 0;
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::rmsnorm_forward<T>(stream_of(x), x.data<T>(), w.data<T>(), N, C, static_cast<float>(eps),
                             y.data<T>(), ptr<float>(rstd));
  });
}

void rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                       const Tensor& dx, const Tensor& dw) {
  const int64_t C = x.dim(-1), N = C ? x.numel() / C : 0;
  Tensor ws = dw.defined() ? workspace(x, static_cast<size_t>(cuda::rmsnorm_backward_workspace_bytes(N, C)))
                           : Tensor();
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::rmsnorm_backward<T>(stream_of(x), dy.data<T>(), x.data<T>(), w.data<T>(), rstd.data<float>(), N, C,
                              dx.data<T>(), ptr<T>(dw), ws.defined() ? ws.data<float>() : nullptr);
  });
}

void rope(const Tensor& x, const Tensor& positions, const RopeArgs& args, const Tensor& y) {
  const auto* inv_freq = static_cast<const float*>(
      cuda_of(x).constant_buffer(args.inv_freq, static_cast<size_t>(args.rotary_dim / 2) * sizeof(float)));
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::rope_apply<T>(stream_of(x), x.data<T>(), positions.data<int32_t>(), inv_freq, x.dim(0), x.dim(1),
                        x.dim(2), x.dim(3), args.rotary_dim, args.inverse, y.data<T>());
  });
}

void softmax(const Tensor& x, const Tensor& y) {
  const int64_t C = x.dim(-1), N = C ? x.numel() / C : 0;
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::softmax_forward<T>(stream_of(x), x.data<T>(), y.data<T>(), N, C);
  });
}

void softmax_backward(const Tensor& dy, const Tensor& y, const Tensor& dx) {
  const int64_t C = y.dim(-1), N = C ? y.numel() / C : 0;
  dispatch(y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::softmax_backward<T>(stream_of(y), dy.data<T>(), y.data<T>(), dx.data<T>(), N, C);
  });
}

// ---- embedding
// ----------------------------------------------------------------------------------------------

void embedding(const Tensor& table, const Tensor& ids, const Tensor& out) {
  const int64_t V = table.dim(0), C = table.dim(1), N = ids.numel();
  cudaStream_t s = stream_of(table);
  const int32_t* id = ids.data<int32_t>();
  switch (table.dtype()) {
    case ENG_BF16:
      cuda::embedding_forward<bf16>(s, table.data<bf16>(), id, N, V, C, out.data<bf16>());
      return;
    case ENG_F32:
      cuda::embedding_forward<float>(s, table.data<float>(), id, N, V, C, out.data<float>());
      return;
    default:
      fail("embedding on CUDA: table dtype {} (bf16 or f32)", dtype_name(table.dtype()));
  }
}

void embedding_backward(const Tensor& grad_out, const Tensor& ids, const Tensor& grad_table) {
  const int64_t V = grad_table.dim(0), C = grad_table.dim(1), N = ids.numel();
  const size_t bytes = cuda::embedding_backward_workspace_bytes(N);
  Tensor ws = workspace(grad_out, bytes);
  dispatch(grad_table.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::embedding_backward<T>(stream_of(grad_out), grad_out.data<T>(), ids.data<int32_t>(), N, V, C,
                                grad_table.data<T>(), ws.raw_data(), bytes);
  });
}

// ---- products and reductions
// --------------------------------------------------------------------------------

void gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c, const Tensor& bias) {
  cuda::GemmDesc d;
  d.trans_a = g.trans_a;
  d.trans_b = g.trans_b;
  d.M = g.M;
  d.N = g.N;
  d.K = g.K;
  d.lda = g.lda;
  d.ldb = g.ldb;
  d.ldc = g.ldc;
  d.alpha = static_cast<float>(g.alpha);
  d.beta = static_cast<float>(g.beta);
  d.batch = g.batch;
  d.stride_a = g.stride_a;
  d.stride_b = g.stride_b;
  d.stride_c = g.stride_c;
  d.ab_type = a.dtype() == ENG_BF16 ? cuda::GemmType::BF16 : cuda::GemmType::F32;
  d.c_type = c.dtype() == ENG_BF16 ? cuda::GemmType::BF16 : cuda::GemmType::F32;
  d.bias = bias.defined() ? bias.raw_data() : nullptr;
  d.bias_type = bias.defined() && bias.dtype() == ENG_BF16 ? cuda::GemmType::BF16 : cuda::GemmType::F32;
  cuda_of(a).gemm_runner().run(stream_of(a), d, a.raw_data(), b.raw_data(), c.raw_data());
}

void sum_all(const Tensor& x, const Tensor& out, bool accumulate) {
  Tensor ws = workspace(x, cuda::scalar_reduce_workspace_bytes(x.numel()));
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::sum_all<T>(stream_of(x), x.data<T>(), x.numel(), out.data<float>(), accumulate, ws.raw_data());
  });
}

void sum_rows(const Tensor& x, const Tensor& out) {
  const int64_t cols = out.numel(), rows = cols ? x.numel() / cols : 0;
  Tensor ws = workspace(x, cuda::sum_rows_workspace_bytes(rows, cols));
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::sum_rows<T>(stream_of(x), x.data<T>(), rows, cols, out.data<T>(), ws.raw_data());
  });
}

void sum_rows_product(const Tensor& x, const Tensor& y, const Tensor& out) {
  const int64_t cols = out.numel(), rows = cols ? x.numel() / cols : 0;
  Tensor ws = workspace(x, cuda::sum_rows_workspace_bytes(rows, cols));
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::sum_rows_product<T>(stream_of(x), x.data<T>(), y.data<T>(), rows, cols, out.data<T>(),
                              ws.raw_data());
  });
}

// x in f32 or bf16 (other floating dtypes converted first).
Tensor as_f32_or_bf16(const Tensor& x) {
  if (x.dtype() == ENG_F32 || x.dtype() == ENG_BF16) return x;
  Tensor c = Tensor::empty(x.shape(), ENG_F32, x.device());
  copy(c, x);
  return c;
}

void sum_squares(const Tensor& x_in, const Tensor& out, bool accumulate) {
  const Tensor x = as_f32_or_bf16(x_in);
  Tensor ws = workspace(x, cuda::scalar_reduce_workspace_bytes(x.numel()));
  const bool direct = out.dtype() == ENG_F32;
  Tensor o = direct ? out : Tensor::empty(Dims{}, ENG_F32, x.device());
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::sum_squares<T>(stream_of(x), x.data<T>(), x.numel(), o.data<float>(), direct && accumulate,
                         ws.raw_data());
  });
  if (!direct) axpby(out, accumulate ? 1.0 : 0.0, o, 1.0);  // f64 running sum += this tensor's f32 sum
}

void count_nonfinite(const Tensor& x_in, const Tensor& out, bool accumulate) {
  const Tensor x = as_f32_or_bf16(x_in);
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::count_nonfinite<T>(stream_of(x), x.data<T>(), x.numel(), out.data<int>(), accumulate);
  });
}

// ---- losses
// -------------------------------------------------------------------------------------------------

void cross_entropy(const Tensor& logits, const Tensor& labels, int64_t ignore_index, double scale_by,
                   const Tensor& loss, const Tensor& lse) {
  const int64_t N = logits.dim(0), V = logits.dim(1);
  Tensor rows = Tensor::empty({N}, ENG_F32, logits.device());
  cudaStream_t s = stream_of(logits);
  dispatch(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::cross_entropy_forward<T>(s, logits.data<T>(), labels.data<int32_t>(), N, V, ignore_index,
                                   rows.data<float>(), lse.data<float>());
  });
  cuda::sum_scaled(s, rows.data<float>(), N, static_cast<float>(scale_by), loss.data<float>(), false);
}

void cross_entropy_backward(const Tensor& logits, const Tensor& labels, const Tensor& lse,
                            int64_t ignore_index, double scale_by, const Tensor& dloss,
                            const Tensor& dlogits) {
  const Tensor g = as_f32_scalar(dloss);
  dispatch(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::cross_entropy_backward<T>(stream_of(logits), logits.data<T>(), labels.data<int32_t>(),
                                    lse.data<float>(), logits.dim(0), logits.dim(1), ignore_index,
                                    g.data<float>(), static_cast<float>(scale_by), dlogits.data<T>());
  });
}

// Rows per chunk of the fused loss: the (R, V) logits of one chunk within the CPU's budget (32 MiB), but at
// least 256 rows so that each chunk's GEMM fills the GPU.
int64_t chunk_rows_for(int64_t chunk_rows, int64_t N, int64_t V, DType ct) {
  if (chunk_rows > 0) return chunk_rows;
  const int64_t budget =
      std::max<int64_t>(cpu::linear_ce_chunk_rows(V, static_cast<int64_t>(dtype_size(ct))), 256);
  return std::max<int64_t>(1, std::min(budget, N));
}

// The logits of rows [r0, r0 + R) of hidden (N, C) against weight (V, C): (R, V) = h[r0:] W^T.
void chunk_logits(const Tensor& hidden, const Tensor& weight, int64_t r0, int64_t R, const Tensor& logits) {
  const int64_t C = hidden.dim(1), V = weight.dim(0);
  GemmArgs g;
  g.trans_b = true;
  g.M = R;
  g.N = V;
  g.K = C;
  g.lda = C;
  g.ldb = C;
  g.ldc = V;
  gemm(g, hidden.view({-1}).sliced(0, r0 * C, (r0 + R) * C), weight, logits, Tensor());
}

void linear_cross_entropy(const Tensor& hidden, const Tensor& weight, const Tensor& labels,
                          int64_t ignore_index, double scale_by, int64_t chunk_rows, const Tensor& loss,
                          const Tensor& lse) {
  const int64_t N = hidden.dim(0), V = weight.dim(0);
  const int64_t R = chunk_rows_for(chunk_rows, N, V, hidden.dtype());
  cudaStream_t s = stream_of(hidden);
  Tensor rows = Tensor::empty({std::max<int64_t>(N, 1)}, ENG_F32, hidden.device());
  Tensor logits = Tensor::empty({R, V}, hidden.dtype(), hidden.device());
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t n = std::min(R, N - r0);
    chunk_logits(hidden, weight, r0, n, logits);
    dispatch(hidden.dtype(), [&](auto tag) {
      using T = decltype(tag);
      cuda::cross_entropy_forward<T>(s, logits.data<T>(), labels.data<int32_t>() + r0, n, V, ignore_index,
                                     rows.data<float>() + r0, lse.data<float>() + r0);
    });
  }
  cuda::sum_scaled(s, rows.data<float>(), N, static_cast<float>(scale_by), loss.data<float>(), false);
}

void linear_cross_entropy_backward(const Tensor& hidden, const Tensor& weight, const Tensor& labels,
                                   const Tensor& lse, int64_t ignore_index, double scale_by,
                                   int64_t chunk_rows, const Tensor& dloss, const Tensor& grad_hidden,
                                   const Tensor& grad_weight) {
  const int64_t N = hidden.dim(0), C = hidden.dim(1), V = weight.dim(0);
  const int64_t R = chunk_rows_for(chunk_rows, N, V, hidden.dtype());
  cudaStream_t s = stream_of(hidden);
  const Tensor g = as_f32_scalar(dloss);
  Tensor dlogits = Tensor::empty({R, V}, hidden.dtype(), hidden.device());
  // grad_weight accumulates over chunks in fp32 (then rounds once into its dtype when that is bf16).
  const bool gw_direct = grad_weight.defined() && grad_weight.dtype() == ENG_F32;
  Tensor gw = grad_weight.defined()
                  ? (gw_direct ? grad_weight : Tensor::empty(grad_weight.shape(), ENG_F32, hidden.device()))
                  : Tensor();
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t n = std::min(R, N - r0);
    chunk_logits(hidden, weight, r0, n, dlogits);
    dispatch(hidden.dtype(), [&](auto tag) {
      using T = decltype(tag);
      cuda::cross_entropy_backward<T>(s, dlogits.data<T>(), labels.data<int32_t>() + r0,
                                      lse.data<float>() + r0, n, V, ignore_index, g.data<float>(),
                                      static_cast<float>(scale_by),
                                      dlogits.data<T>());  // in place
    });
    if (grad_hidden.defined()) {  // grad_hidden[chunk] (n, C) = dlogits (n, V) @ W (V, C)
      GemmArgs a;
      a.M = n;
      a.N = C;
      a.K = V;
      a.lda = V;
      a.ldb = C;
      a.ldc = C;
      gemm(a, dlogits, weight, grad_hidden.view({-1}).sliced(0, r0 * C, (r0 + n) * C), Tensor());
    }
    if (gw.defined()) {  // grad_weight (V, C) (+)= dlogits^T (V, n) @ h[chunk] (n, C)
      GemmArgs b;
      b.trans_a = true;
      b.M = V;
      b.N = C;
      b.K = n;
      b.lda = V;
      b.ldb = C;
      b.ldc = C;
      b.beta = r0 == 0 ? 0.0 : 1.0;
      gemm(b, dlogits, hidden.view({-1}).sliced(0, r0 * C, (r0 + n) * C), gw, Tensor());
    }
  }
  if (gw.defined() && N == 0) fill(gw, 0.0);
  if (gw.defined() && !gw_direct) copy(grad_weight, gw);
}

// ---- attention
// ----------------------------------------------------------------------------------------------

cuda::AttentionDims dims_of(const AttentionShape& s) {
  cuda::AttentionDims d;
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

// bf16 attention goes through cuDNN's fused SDPA when this build has the frontend and cuDNN takes the
// problem; everything else (f32, shapes cuDNN refuses, builds without the frontend) through the engine's own
// kernels.
cuda::CudnnAttention* cudnn_for(const Tensor& q, const cuda::CudnnAttentionProblem& pb, bool backward) {
  if (q.dtype() != ENG_BF16) return nullptr;
  cuda::CudnnAttention* c = cuda_of(q).cudnn_attention();
  if (!c) return nullptr;
  return (backward ? c->backward_unsupported(pb) : c->forward_unsupported(pb)).empty() ? c : nullptr;
}

// cuDNN's deterministic SDPA backward can take a workspace of about 2 bytes per (query, key, head): 60 GB for a
// 32k-token row with 28 heads (which it trains at 6,745 tokens/s on an H200), 225 GiB for 64k, more than the
// card (train.deterministic = false picks its non-deterministic algorithm instead, see Device). The engine's own kernels are deterministic too and need none, but are far slower at such lengths (a
// 32k step took over 30 s), so they take over only where cuDNN's workspace could never fit: more than half
// of the device's memory.
size_t max_cudnn_attention_workspace(const Tensor& q) { return cuda_of(q).total_memory() / 2; }

cuda::CudnnAttentionProblem problem_of(const AttentionShape& s, double scale_by, const Tensor& segments,
                                       bool lse) {
  cuda::CudnnAttentionProblem pb;
  pb.dims = dims_of(s);
  pb.scale = static_cast<float>(scale_by);
  pb.segments = segments.defined();
  pb.max_sequences = 0;  // B * T: always enough (the node does not know how many samples a row holds)
  pb.with_lse = lse;
  return pb;
}

void attention(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
               const Tensor& segments, double scale_by, const Tensor& out, const Tensor& lse) {
  const cuda::CudnnAttentionProblem pb = problem_of(s, scale_by, segments, lse.defined());
  cuda::CudnnAttention* c = cudnn_for(q, pb, false);
  if (c != nullptr && c->forward_workspace_bytes(pb) > max_cudnn_attention_workspace(q)) {
    static std::once_flag logged;
    std::call_once(logged, [&] {
      spdlog::warn("attention forward: cuDNN would need a {:.1f} GiB workspace for {} tokens x {} heads, more "
                   "than half the device; the engine's own kernel takes such problems (much slower)",
                   double(c->forward_workspace_bytes(pb)) / double(size_t(1) << 30), s.Tq, s.Hq);
    });
    c = nullptr;
  }
  if (c != nullptr) {
    Tensor ws = workspace(q, c->forward_workspace_bytes(pb));
    c->forward(pb, q.data<bf16>(), k.data<bf16>(), v.data<bf16>(), ptr<int32_t>(segments), out.data<bf16>(),
               ptr<float>(lse), ws.raw_data(), ws.nbytes(), stream_of(q));
    return;
  }
  dispatch(q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::attention_forward<T>(dims_of(s), q.data<T>(), k.data<T>(), v.data<T>(), ptr<int32_t>(segments),
                               static_cast<float>(scale_by), out.data<T>(), ptr<float>(lse), stream_of(q));
  });
}

void attention_backward(const AttentionShape& s, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& segments, double scale_by, const Tensor& out, const Tensor& lse,
                        const Tensor& grad_out, const Tensor& grad_q, const Tensor& grad_k,
                        const Tensor& grad_v) {
  cuda::CudnnAttentionProblem pb = problem_of(s, scale_by, segments, true);
  pb.deterministic = cuda_of(q).deterministic();  // train.deterministic
  cuda::CudnnAttention* c = cudnn_for(q, pb, true);
  if (c != nullptr && c->backward_workspace_bytes(pb) > max_cudnn_attention_workspace(q)) {
    static std::once_flag logged;
    std::call_once(logged, [&] {
      spdlog::warn("attention backward: cuDNN would need a {:.1f} GiB workspace for {} tokens x {} heads, more "
                   "than half the device; the engine's own kernel (no workspace, much slower) takes such problems "
                   "(train.deterministic = false lets cuDNN use its non-deterministic algorithm, whose workspace "
                   "grows with the tokens only)",
                   double(c->backward_workspace_bytes(pb)) / double(size_t(1) << 30), s.Tq, s.Hq);
    });
    c = nullptr;
  }
  if (c != nullptr) {
    Tensor ws = workspace(q, c->backward_workspace_bytes(pb));
    c->backward(pb, q.data<bf16>(), k.data<bf16>(), v.data<bf16>(), ptr<int32_t>(segments), out.data<bf16>(),
                lse.data<float>(), grad_out.data<bf16>(), grad_q.data<bf16>(), grad_k.data<bf16>(),
                grad_v.data<bf16>(), ws.raw_data(), ws.nbytes(), stream_of(q));
    return;
  }
  dispatch(q.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::attention_backward<T>(dims_of(s), q.data<T>(), k.data<T>(), v.data<T>(), ptr<int32_t>(segments),
                                static_cast<float>(scale_by), out.data<T>(), lse.data<float>(),
                                grad_out.data<T>(), grad_q.data<T>(), grad_k.data<T>(), grad_v.data<T>(),
                                stream_of(q));
  });
}

// ---- policy
// --------------------------------------------------------------------------------------------------

// ---- elementwise math
// ----------------------------------------------------------------------------------------

void unary(UnaryOp op, const Tensor& x, double p0, double p1, const Tensor& y) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::unary<T>(stream_of(x), op, x.data<T>(), static_cast<float>(p0), static_cast<float>(p1), y.data<T>(),
                   x.numel());
  });
}

void unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y, double p0, double p1,
                    const Tensor& dx) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::unary_backward<T>(stream_of(x), op, dy.data<T>(), x.data<T>(), ptr<T>(y), static_cast<float>(p0),
                            static_cast<float>(p1), dx.data<T>(), x.numel());
  });
}

void binary(BinaryOp op, const Broadcast& bc, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::binary<T>(stream_of(out), op, bc, a.data<T>(), b.data<T>(), out.data<T>());
  });
}

void where(const Broadcast& bc, const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::where<T>(stream_of(out), bc, cond.data<T>(), a.data<T>(), b.data<T>(), out.data<T>());
  });
}

void reduce_to(const Broadcast& bc, const Tensor& x, const Tensor& out) {
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    cuda::reduce_to<T>(stream_of(x), bc, x.data<T>(), out.data<T>(), out.numel());
  });
}

// The lists' device pointers gathered on the host; one launch per cuda::kForeachBatch tensors.
void foreach_update(const ForeachArgs& args, int64_t n, const Tensor* dst, const Tensor* x, const Tensor* y) {
  if (n == 0) return;
  dispatch(dst[0].dtype(), [&](auto tag) {
    using T = decltype(tag);
    std::vector<T*> d(static_cast<size_t>(n));
    std::vector<const T*> xs(static_cast<size_t>(n)), ys(static_cast<size_t>(n));
    std::vector<int64_t> numel(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      d[static_cast<size_t>(i)] = dst[i].data<T>();
      xs[static_cast<size_t>(i)] = x[i].data<T>();
      ys[static_cast<size_t>(i)] = ptr<T>(y[i]);
      numel[static_cast<size_t>(i)] = dst[i].numel();
    }
    cuda::foreach_update<T>(stream_of(dst[0]), args, n, d.data(), xs.data(), ys.data(), numel.data());
  });
}

const char* unsupported(Kernel k, DType ct) {
  switch (k) {
    case Kernel::Copy:
    case Kernel::Fill:
    case Kernel::FillFromScalar:
    case Kernel::Embedding:
    case Kernel::SumSquares:
    case Kernel::CountNonfinite:
      return nullptr;
    case Kernel::Axpby:
      return ct == ENG_F32 || ct == ENG_F64 || ct == ENG_BF16 ? nullptr
                                                              : "CUDA accumulates into f32, f64 or bf16";
    case Kernel::FirstBadId:
      return "ids on the GPU are checked where the engine makes them, not read back";
    default:
      return ct == ENG_F32 || ct == ENG_BF16
                 ? nullptr
                 : "CUDA computes in bf16 (f32 accumulation) or f32; f64 runs on the CPU";
  }
}

void refuse_f64(const char* op, const DType* in, int n) {
  for (int i = 0; i < n; ++i)
    if (in[i] == ENG_F64)
      fail("{}: f64 inputs on CUDA; the GPU computes in bf16 or f32 (run f64 gradient checks on the CPU)",
           op);
}

// bf16 policy: f32 when every floating input is f32, else bf16.
DType compute_dtype_bf16(const char* op, const DType* in, int n) {
  refuse_f64(op, in, n);
  bool all_f32 = true;
  for (int i = 0; i < n; ++i) all_f32 = all_f32 && in[i] == ENG_F32;
  return all_f32 ? ENG_F32 : ENG_BF16;
}

// f32 policy: everything in f32.
DType compute_dtype_f32(const char* op, const DType* in, int n) {
  refuse_f64(op, in, n);
  return ENG_F32;
}

// The table of a compute policy (entries identical but for compute_dtype).
constexpr KernelTable make_table(DType (*policy)(const char*, const DType*, int)) {
  return KernelTable{
      "cuda",
      unsupported,
      policy,
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
      nullptr,  // first_bad_id: the GPU's ids are not read back
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
}

constexpr KernelTable kCudaTable = make_table(compute_dtype_bf16);
constexpr KernelTable kCudaTableF32 = make_table(compute_dtype_f32);

}  // namespace

const KernelTable& cuda_kernel_table() { return kCudaTable; }

const KernelTable& CudaDevice::kernels() const {
  return compute_dtype_ == ENG_F32 ? kCudaTableF32 : kCudaTable;
}

void CudaDevice::set_compute_dtype(DType dtype) {
  if (dtype != ENG_F32 && dtype != ENG_BF16)
    fail("{}: compute dtype {} (CUDA computes in bf16 or f32)", label(), dtype_name(dtype));
  compute_dtype_ = dtype;
}

}  // namespace engine::rt
