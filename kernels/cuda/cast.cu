// Copy and convert: dst = convert(src) over a strided index space of up to 8 dimensions, any pair of the
// engine's dtypes (f32, f64, bf16, f16, i32, i64, u8). The GPU twin of kernels/cpu/cast.cpp.
//
// Math: bf16/f16 <-> f32 use the bit-exact conversions of engine/core/float16.hpp (launch.cuh mirrors them
// operation for operation), so every output bit equals the CPU's, NaN payloads included; other pairs are C++
// static_casts; 16-bit <-> non-f32 goes through f32, as on the CPU.
//
// Layout: src and dst strides are in elements. The launcher first drops size-1 dimensions and merges
// neighbours that are contiguous in both src and dst, so a transposed view becomes at most the dimensions
// that really differ, and a contiguous pair becomes one dimension.
//
// Shape of the kernels:
// - contiguous, same dtype: cudaMemcpyAsync (the copy engine is as fast as any kernel).
// - contiguous, two dtypes: each thread converts K = 16 / max(sizeof src, sizeof dst) elements with one
//   vector load and one vector store (16 bytes on the wider side), when both pointers are aligned to their
//   vector; otherwise one element per thread. Memory bound, so the only thing that matters is full-width,
//   coalesced transactions.
// - strided: one element per thread, the index decomposed over the (merged) shape, which travels by value in
//   the kernel arguments (no device allocation). Coalesced on whichever side has the inner stride 1.
// Grid-stride loops with 64-bit indices: any n.
#include <type_traits>

#include "kernels/cuda/cast.cuh"
#include "kernels/cuda/launch.cuh"

namespace engine::cuda {

namespace {

constexpr int kMaxDims = 8;
constexpr int kThreads = 256;

struct Bf16Bits {
  uint16_t bits;
};
struct F16Bits {
  uint16_t bits;
};

template <int Bytes>
struct Word;
template <>
struct Word<1> {
  using type = uint8_t;
};
template <>
struct Word<2> {
  using type = uint16_t;
};
template <>
struct Word<4> {
  using type = uint32_t;
};
template <>
struct Word<8> {
  using type = uint64_t;
};

template <typename S, typename D>
__device__ __forceinline__ D convert_one(S v) {
  if constexpr (std::is_same_v<S, D>) {
    return v;
  } else if constexpr (std::is_same_v<S, Bf16Bits> || std::is_same_v<S, F16Bits>) {
    float f;
    if constexpr (std::is_same_v<S, Bf16Bits>)
      f = detail::bf16_bits_to_f32(v.bits);
    else
      f = detail::f16_bits_to_f32(v.bits);
    if constexpr (std::is_same_v<D, Bf16Bits>)
      return D{detail::f32_to_bf16_bits(f)};
    else if constexpr (std::is_same_v<D, F16Bits>)
      return D{detail::f32_to_f16_bits(f)};
    else
      return static_cast<D>(f);
  } else if constexpr (std::is_same_v<D, Bf16Bits>) {
    return D{detail::f32_to_bf16_bits(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<D, F16Bits>) {
    return D{detail::f32_to_f16_bits(static_cast<float>(v))};
  } else {
    return static_cast<D>(v);
  }
}

template <typename T, int K>
struct alignas(sizeof(T) * K) Vec {
  T v[K];
};

// dst[i] = convert(src[i]), i < n; K elements per vector (K == 1: scalar).
template <typename S, typename D, int K>
__global__ void convert_contiguous_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t groups = n / K;
  const auto* s = reinterpret_cast<const Vec<S, K>*>(src);
  auto* d = reinterpret_cast<Vec<D, K>*>(dst);
  for (int64_t g = tid; g < groups; g += stride) {
    const Vec<S, K> in = s[g];
    Vec<D, K> out;
#pragma unroll
    for (int k = 0; k < K; ++k) out.v[k] = convert_one<S, D>(in.v[k]);
    d[g] = out;
  }
  if constexpr (K > 1) {
    const int64_t t = groups * K + tid;  // the n % K tail, one element per thread of the first threads
    if (t < n) dst[t] = convert_one<S, D>(src[t]);
  }
}

struct StridedLayout {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t src_strides[kMaxDims];
  int64_t dst_strides[kMaxDims];
};

template <typename S, typename D>
__global__ void convert_strided_kernel(const S* __restrict__ src, D* __restrict__ dst, StridedLayout layout,
                                       int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t rem = i, so = 0, dof = 0;
#pragma unroll
    for (int k = kMaxDims - 1; k >= 0; --k) {
      if (k < layout.ndim) {
        const int64_t extent = layout.shape[k];
        const int64_t c = rem % extent;
        rem /= extent;
        so += c * layout.src_strides[k];
        dof += c * layout.dst_strides[k];
      }
    }
    dst[dof] = convert_one<S, D>(src[so]);
  }
}

template <typename S, typename D>
void launch_contiguous(cudaStream_t stream, const void* src, void* dst, int64_t n) {
  constexpr int kWide = sizeof(S) > sizeof(D) ? static_cast<int>(sizeof(S)) : static_cast<int>(sizeof(D));
  constexpr int K = 16 / kWide;
  const bool aligned = reinterpret_cast<uintptr_t>(src) % (sizeof(S) * K) == 0 &&
                       reinterpret_cast<uintptr_t>(dst) % (sizeof(D) * K) == 0;
  const S* s = static_cast<const S*>(src);
  D* d = static_cast<D*>(dst);
  if (aligned && K > 1) {
    convert_contiguous_kernel<S, D, K>
        <<<detail::grid_blocks(n / K + 1, kThreads), kThreads, 0, stream>>>(s, d, n);
  } else {
    convert_contiguous_kernel<S, D, 1><<<detail::grid_blocks(n, kThreads), kThreads, 0, stream>>>(s, d, n);
  }
  CUDA_CHECK_LAUNCH();
}

template <typename S, typename D>
void launch_strided(cudaStream_t stream, const void* src, void* dst, const StridedLayout& layout, int64_t n) {
  if constexpr (std::is_same_v<S, D>) {
    using W = typename Word<sizeof(S)>::type;  // a same-dtype copy moves words: 4 kernels instead of 7
    convert_strided_kernel<W, W><<<detail::grid_blocks(n, kThreads), kThreads, 0, stream>>>(
        static_cast<const W*>(src), static_cast<W*>(dst), layout, n);
  } else {
    convert_strided_kernel<S, D><<<detail::grid_blocks(n, kThreads), kThreads, 0, stream>>>(
        static_cast<const S*>(src), static_cast<D*>(dst), layout, n);
  }
  CUDA_CHECK_LAUNCH();
}

template <typename S, typename D>
void launch(cudaStream_t stream, const void* src, void* dst, const StridedLayout* layout, int64_t n) {
  if (layout)
    launch_strided<S, D>(stream, src, dst, *layout, n);
  else
    launch_contiguous<S, D>(stream, src, dst, n);
}

template <typename S>
void dispatch_dst(cudaStream_t stream, const void* src, void* dst, ElemType dst_dtype,
                  const StridedLayout* layout, int64_t n) {
  switch (dst_dtype) {
    case ElemType::F32:
      return launch<S, float>(stream, src, dst, layout, n);
    case ElemType::F64:
      return launch<S, double>(stream, src, dst, layout, n);
    case ElemType::BF16:
      return launch<S, Bf16Bits>(stream, src, dst, layout, n);
    case ElemType::F16:
      return launch<S, F16Bits>(stream, src, dst, layout, n);
    case ElemType::I32:
      return launch<S, int32_t>(stream, src, dst, layout, n);
    case ElemType::I64:
      return launch<S, int64_t>(stream, src, dst, layout, n);
    case ElemType::U8:
      return launch<S, uint8_t>(stream, src, dst, layout, n);
  }
  ENGINE_CUDA_REQUIRE(false, "copy_convert: unknown destination dtype");
}

void dispatch(cudaStream_t stream, const void* src, ElemType src_dtype, void* dst, ElemType dst_dtype,
              const StridedLayout* layout, int64_t n) {
  switch (src_dtype) {
    case ElemType::F32:
      return dispatch_dst<float>(stream, src, dst, dst_dtype, layout, n);
    case ElemType::F64:
      return dispatch_dst<double>(stream, src, dst, dst_dtype, layout, n);
    case ElemType::BF16:
      return dispatch_dst<Bf16Bits>(stream, src, dst, dst_dtype, layout, n);
    case ElemType::F16:
      return dispatch_dst<F16Bits>(stream, src, dst, dst_dtype, layout, n);
    case ElemType::I32:
      return dispatch_dst<int32_t>(stream, src, dst, dst_dtype, layout, n);
    case ElemType::I64:
      return dispatch_dst<int64_t>(stream, src, dst, dst_dtype, layout, n);
    case ElemType::U8:
      return dispatch_dst<uint8_t>(stream, src, dst, dst_dtype, layout, n);
  }
  ENGINE_CUDA_REQUIRE(false, "copy_convert: unknown source dtype");
}

}  // namespace

void copy_convert(cudaStream_t stream, const void* src, ElemType src_dtype, const int64_t* shape,
                  const int64_t* src_strides, int ndim, void* dst, ElemType dst_dtype,
                  const int64_t* dst_strides) {
  ENGINE_CUDA_REQUIRE(ndim >= 0 && ndim <= kMaxDims, "copy_convert: ndim must be 0..8");
  ENGINE_CUDA_REQUIRE(ndim == 0 || shape != nullptr, "copy_convert: shape is null");
  ENGINE_CUDA_REQUIRE(elem_size(src_dtype) > 0 && elem_size(dst_dtype) > 0, "copy_convert: unknown dtype");

  // Row-major strides where none are given; then drop size-1 dimensions and merge neighbours contiguous on
  // both sides (outer dim a, inner dim b merge when stride[a] == stride[b] * shape[b] on both sides).
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) {
    ENGINE_CUDA_REQUIRE(shape[i] >= 0, "copy_convert: negative extent");
    n *= shape[i];
  }
  if (n == 0) return;
  int64_t row_major[kMaxDims];
  {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      row_major[i] = s;
      s *= shape[i];
    }
  }
  StridedLayout layout{};
  int m = 0;  // merged dimensions, outermost first
  for (int i = 0; i < ndim; ++i) {
    if (shape[i] == 1) continue;
    const int64_t ss = src_strides ? src_strides[i] : row_major[i];
    const int64_t ds = dst_strides ? dst_strides[i] : row_major[i];
    if (m > 0 && layout.src_strides[m - 1] == ss * shape[i] && layout.dst_strides[m - 1] == ds * shape[i]) {
      layout.shape[m - 1] *= shape[i];
      layout.src_strides[m - 1] = ss;
      layout.dst_strides[m - 1] = ds;
    } else {
      layout.shape[m] = shape[i];
      layout.src_strides[m] = ss;
      layout.dst_strides[m] = ds;
      ++m;
    }
  }
  layout.ndim = m;
  const bool contiguous = m == 0 || (m == 1 && layout.src_strides[0] == 1 && layout.dst_strides[0] == 1);
  if (contiguous && src_dtype == dst_dtype) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * static_cast<size_t>(elem_size(src_dtype)),
                               cudaMemcpyDeviceToDevice, stream));
    return;
  }
  dispatch(stream, src, src_dtype, dst, dst_dtype, contiguous ? nullptr : &layout, n);
}

void convert(cudaStream_t stream, const void* src, ElemType src_dtype, void* dst, ElemType dst_dtype,
             int64_t n) {
  ENGINE_CUDA_REQUIRE(n >= 0, "convert: negative element count");
  copy_convert(stream, src, src_dtype, &n, nullptr, 1, dst, dst_dtype, nullptr);
}

}  // namespace engine::cuda
