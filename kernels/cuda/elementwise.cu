// Elementwise kernels: fill, axpby, broadcast add / mul, scale, fill from a device scalar. The GPU twin of
// kernels/cpu/elementwise.cpp.
//
// Math: out = a op b per element in fp32 (f64 for axpby into f64), one rounding to the storage type at the
// store. axpby uses __fmul_rn / __fadd_rn so that nvcc does not contract a * d + b * s into an FMA: the
// result is then the CPU reference's bit for bit in f32 and f64.
//
// Layout: contiguous, row-major buffers. Broadcasting is the one form the ops need: a (outer, inner) with b
// (inner) repeated over the rows (outer == 1 is the same-shape case).
//
// Shape: one element per thread in a grid-stride loop, or, for f32 and bf16 with 16-byte aligned pointers (and
// a broadcast row of whole vectors), one 16-byte vector per thread (4 or 8 elements): measured on an H200,
// the element-per-thread add ran at about 38% of HBM bandwidth on the (8192, 18944) bf16 tensors of a
// micro-batch-4 LoRA step (memory bound, no reuse; coalesced loads and stores).
// The broadcast kernels need j = i % inner per element; they use 32-bit indices when outer * inner fits, as
// a 64-bit division costs several times a 32-bit one, and 64-bit indices otherwise. fill converts its value
// once on the host and writes words of the element size (cudaMemsetAsync when all bytes are equal, e.g. 0).
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/vec16.cuh"

namespace engine::cuda {

namespace {

constexpr int kThreads = 256;

template <typename W>
__global__ void fill_words_kernel(W* __restrict__ dst, W value, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = value;
}

template <typename W>
void fill_words(cudaStream_t stream, void* dst, W value, int64_t n) {
  unsigned char bytes[sizeof(W)];
  std::memcpy(bytes, &value, sizeof(W));
  bool uniform = true;
  for (size_t k = 1; k < sizeof(W); ++k) uniform = uniform && bytes[k] == bytes[0];
  if (uniform) {
    CUDA_CHECK(cudaMemsetAsync(dst, bytes[0], static_cast<size_t>(n) * sizeof(W), stream));
    return;
  }
  fill_words_kernel<W>
      <<<detail::grid_blocks(n, kThreads), kThreads, 0, stream>>>(static_cast<W*>(dst), value, n);
  CUDA_CHECK_LAUNCH();
}

// Loads of the axpby operand types, widened to the compute type C (float or double).
template <typename C>
__device__ __forceinline__ C load_as(const float* p, int64_t i) {
  return static_cast<C>(p[i]);
}
template <typename C>
__device__ __forceinline__ C load_as(const double* p, int64_t i) {
  return static_cast<C>(p[i]);
}
template <typename C>
__device__ __forceinline__ C load_as(const __nv_bfloat16* p, int64_t i) {
  return static_cast<C>(__bfloat162float(p[i]));
}
template <typename C>
__device__ __forceinline__ C load_as(const __half* p, int64_t i) {
  return static_cast<C>(__half2float(p[i]));
}

__device__ __forceinline__ float mul_rn(float x, float y) { return __fmul_rn(x, y); }
__device__ __forceinline__ double mul_rn(double x, double y) { return __dmul_rn(x, y); }
__device__ __forceinline__ float add_rn(float x, float y) { return __fadd_rn(x, y); }
__device__ __forceinline__ double add_rn(double x, double y) { return __dadd_rn(x, y); }

template <typename D>
__device__ __forceinline__ void store_from(D* p, int64_t i, float v) {
  if constexpr (std::is_same_v<D, __nv_bfloat16>)
    p[i] = __float2bfloat16_rn(v);
  else
    p[i] = v;
}
__device__ __forceinline__ void store_from(double* p, int64_t i, double v) { p[i] = v; }

template <typename D, typename S, typename C>
__global__ void axpby_kernel(D* __restrict__ dst, C a, const S* __restrict__ src, C b, int64_t n,
                             bool read_dst) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const C bs = mul_rn(b, load_as<C>(src, i));
    const C v = read_dst ? add_rn(mul_rn(a, load_as<C>(dst, i)), bs) : bs;
    store_from(dst, i, v);
  }
}

template <typename D, typename C>
void axpby_src(cudaStream_t stream, D* dst, double a, const void* src, ElemType src_dtype, double b,
               int64_t n) {
  const unsigned blocks = detail::grid_blocks(n, kThreads);
  const bool read_dst = a != 0.0;
  const C ca = static_cast<C>(a), cb = static_cast<C>(b);
  switch (src_dtype) {
    case ElemType::F32:
      axpby_kernel<D, float, C>
          <<<blocks, kThreads, 0, stream>>>(dst, ca, static_cast<const float*>(src), cb, n, read_dst);
      break;
    case ElemType::F64:
      axpby_kernel<D, double, C>
          <<<blocks, kThreads, 0, stream>>>(dst, ca, static_cast<const double*>(src), cb, n, read_dst);
      break;
    case ElemType::BF16:
      axpby_kernel<D, __nv_bfloat16, C>
          <<<blocks, kThreads, 0, stream>>>(dst, ca, static_cast<const __nv_bfloat16*>(src), cb, n, read_dst);
      break;
    case ElemType::F16:
      axpby_kernel<D, __half, C>
          <<<blocks, kThreads, 0, stream>>>(dst, ca, static_cast<const __half*>(src), cb, n, read_dst);
      break;
    default:
      ENGINE_CUDA_REQUIRE(false, "axpby: src dtype must be F32, F64, BF16 or F16");
  }
  CUDA_CHECK_LAUNCH();
}

template <typename T, typename I, bool Mul>
__global__ void broadcast_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, I n,
                                 I inner) {
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = detail::to_f32(a[i]), y = detail::to_f32(b[i % inner]);
    out[i] = detail::from_f32<T>(Mul ? x * y : x + y);
  }
}

// The 16-byte form of the two kernels above for f32 and bf16 (4 or 8 elements per load and store, one
// index computation per vector): the same fp32 math per element, so the same bits. Used when every pointer
// is 16-byte aligned and the broadcast row is a whole number of vectors.
template <typename T>
constexpr int kVec = detail::kVec16<T>;

template <typename T>
bool vectorizable(int64_t inner, std::initializer_list<const void*> ptrs) {
  return inner % kVec<T> == 0 && detail::aligned16<T>(ptrs);
}

template <typename T, bool Mul>
__global__ void broadcast_vec_kernel(const uint4* __restrict__ a, const uint4* __restrict__ b,
                                     uint4* __restrict__ out, int64_t nvec, int64_t inner_vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec; i += stride) {
    const uint4 va = a[i], vb = b[inner_vec == nvec ? i : i % inner_vec];
    uint4 vo;
    const T* pa = reinterpret_cast<const T*>(&va);
    const T* pb = reinterpret_cast<const T*>(&vb);
    T* po = reinterpret_cast<T*>(&vo);
#pragma unroll
    for (int k = 0; k < kVec<T>; ++k) {
      const float x = detail::to_f32(pa[k]), y = detail::to_f32(pb[k]);
      po[k] = detail::from_f32<T>(Mul ? x * y : x + y);
    }
    out[i] = vo;
  }
}

template <typename T>
__global__ void scale_vec_kernel(const uint4* __restrict__ x, float s, uint4* __restrict__ out, int64_t nvec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec; i += stride) {
    const uint4 vx = x[i];
    uint4 vo;
    const T* px = reinterpret_cast<const T*>(&vx);
    T* po = reinterpret_cast<T*>(&vo);
#pragma unroll
    for (int k = 0; k < kVec<T>; ++k) po[k] = detail::from_f32<T>(s * detail::to_f32(px[k]));
    out[i] = vo;
  }
}

template <typename T, bool Mul>
void broadcast(cudaStream_t stream, const T* a, const T* b, T* out, int64_t outer, int64_t inner) {
  ENGINE_CUDA_REQUIRE(outer >= 0 && inner >= 0, "add_broadcast / mul_broadcast: negative extent");
  const int64_t n = outer * inner;
  if (n == 0) return;
  if (vectorizable<T>(inner, {a, b, out})) {
    const int64_t nvec = n / kVec<T>;
    broadcast_vec_kernel<T, Mul><<<detail::grid_blocks(nvec, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<const uint4*>(a), reinterpret_cast<const uint4*>(b), reinterpret_cast<uint4*>(out),
        nvec, inner / kVec<T>);
    CUDA_CHECK_LAUNCH();
    return;
  }
  const unsigned blocks = detail::grid_blocks(n, kThreads);
  // 32-bit indices when the grid-stride loop cannot overflow them either.
  if (n + static_cast<int64_t>(blocks) * kThreads <= int64_t{0xffffffff})
    broadcast_kernel<T, uint32_t, Mul>
        <<<blocks, kThreads, 0, stream>>>(a, b, out, static_cast<uint32_t>(n), static_cast<uint32_t>(inner));
  else
    broadcast_kernel<T, int64_t, Mul><<<blocks, kThreads, 0, stream>>>(a, b, out, n, inner);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
__global__ void scale_kernel(const T* x, float s, T* out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = detail::from_f32<T>(s * detail::to_f32(x[i]));
}

template <typename T>
__global__ void fill_from_scalar_kernel(T* __restrict__ dst, int64_t n, const float* __restrict__ scalar,
                                        float multiplier) {
  const T v = detail::from_f32<T>(multiplier * *scalar);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = v;
}

}  // namespace

void fill(cudaStream_t stream, void* dst, ElemType dtype, double value, int64_t n) {
  ENGINE_CUDA_REQUIRE(n >= 0, "fill: negative element count");
  if (n == 0) return;
  switch (dtype) {
    case ElemType::F32:
      return fill_words<uint32_t>(stream, dst, detail::f32_bits(static_cast<float>(value)), n);
    case ElemType::F64: {
      uint64_t w;
      std::memcpy(&w, &value, sizeof w);
      return fill_words<uint64_t>(stream, dst, w, n);
    }
    case ElemType::BF16:
      return fill_words<uint16_t>(stream, dst, detail::f32_to_bf16_bits(static_cast<float>(value)), n);
    case ElemType::F16:
      return fill_words<uint16_t>(stream, dst, detail::f32_to_f16_bits(static_cast<float>(value)), n);
    case ElemType::I32:
      return fill_words<uint32_t>(stream, dst, static_cast<uint32_t>(static_cast<int32_t>(value)), n);
    case ElemType::I64:
      return fill_words<uint64_t>(stream, dst, static_cast<uint64_t>(static_cast<int64_t>(value)), n);
    case ElemType::U8:
      return fill_words<uint8_t>(stream, dst, static_cast<uint8_t>(value), n);
  }
  ENGINE_CUDA_REQUIRE(false, "fill: unknown dtype");
}

void axpby(cudaStream_t stream, void* dst, ElemType dst_dtype, double a, const void* src, ElemType src_dtype,
           double b, int64_t n) {
  ENGINE_CUDA_REQUIRE(n >= 0, "axpby: negative element count");
  if (n == 0) return;
  switch (dst_dtype) {
    case ElemType::F32:
      return axpby_src<float, float>(stream, static_cast<float*>(dst), a, src, src_dtype, b, n);
    case ElemType::F64:
      return axpby_src<double, double>(stream, static_cast<double*>(dst), a, src, src_dtype, b, n);
    case ElemType::BF16:
      return axpby_src<__nv_bfloat16, float>(stream, static_cast<__nv_bfloat16*>(dst), a, src, src_dtype, b,
                                             n);
    default:
      break;
  }
  ENGINE_CUDA_REQUIRE(false, "axpby: dst dtype must be F32, F64 or BF16");
}

template <typename T>
void add_broadcast(cudaStream_t stream, const T* a, const T* b, T* out, int64_t outer, int64_t inner) {
  broadcast<T, false>(stream, a, b, out, outer, inner);
}

template <typename T>
void mul_broadcast(cudaStream_t stream, const T* a, const T* b, T* out, int64_t outer, int64_t inner) {
  broadcast<T, true>(stream, a, b, out, outer, inner);
}

template <typename T>
void scale(cudaStream_t stream, const T* x, float s, T* out, int64_t n) {
  ENGINE_CUDA_REQUIRE(n >= 0, "scale: negative element count");
  if (n == 0) return;
  if (vectorizable<T>(kVec<T>, {x, out})) {  // aligned f32 or bf16: the vectors, then the tail
    const int64_t nvec = n / kVec<T>, done = nvec * kVec<T>;
    if (nvec > 0)
      scale_vec_kernel<T><<<detail::grid_blocks(nvec, kThreads), kThreads, 0, stream>>>(
          reinterpret_cast<const uint4*>(x), s, reinterpret_cast<uint4*>(out), nvec);
    if (done < n)
      scale_kernel<T><<<1, kThreads, 0, stream>>>(x + done, s, out + done, n - done);
    CUDA_CHECK_LAUNCH();
    return;
  }
  scale_kernel<T><<<detail::grid_blocks(n, kThreads), kThreads, 0, stream>>>(x, s, out, n);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void fill_from_scalar(cudaStream_t stream, T* dst, int64_t n, const float* scalar, float multiplier) {
  ENGINE_CUDA_REQUIRE(n >= 0, "fill_from_scalar: negative element count");
  if (n == 0) return;
  fill_from_scalar_kernel<T>
      <<<detail::grid_blocks(n, kThreads), kThreads, 0, stream>>>(dst, n, scalar, multiplier);
  CUDA_CHECK_LAUNCH();
}

#define ENGINE_INSTANTIATE(T)                                                             \
  template void add_broadcast<T>(cudaStream_t, const T*, const T*, T*, int64_t, int64_t); \
  template void mul_broadcast<T>(cudaStream_t, const T*, const T*, T*, int64_t, int64_t); \
  template void scale<T>(cudaStream_t, const T*, float, T*, int64_t);                     \
  template void fill_from_scalar<T>(cudaStream_t, T*, int64_t, const float*, float);
ENGINE_INSTANTIATE(float)
ENGINE_INSTANTIATE(__nv_bfloat16)
#undef ENGINE_INSTANTIATE

}  // namespace engine::cuda
