// Fused multi-tensor AdamW: one launch steps up to kMaxTensorsPerLaunch parameters in place. The GPU twin of
// adamw::update (plugins/adamw/adamw_update.hpp), which is its reference.
//
// Math, per element, in exactly the order of adamw_update.hpp (torch.optim.AdamW's single-tensor path):
//   g  <- g * grad_scale                                       (only when grad_scale != 1)
//   p  <- p * decay                   decay = 1 - lr * wd      (only when wd != 0)
//   m  <- w < 0.5 ? m + w * (g - m) : g - (g - m) * (1 - w)    w = 1 - beta1 (torch's lerp)
//   v  <- v * b2 + ((1 - b2) * g) * g
//   p  <- p + (-step_size) * (m / (sqrt(v) / bc2_sqrt + eps))  step_size = lr / (1 - b1^t), bc2_sqrt =
//                                                              sqrt(1 - b2^t), both per tensor from the host
// Every operation is an explicitly rounded fp32 intrinsic (__fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn,
// __fsqrt_rn): nvcc never contracts them into FMAs, division and square root are IEEE-correct, so the result
// is the CPU reference's bit for bit (x86-64 SSE: no FMA, no excess precision; no flush to zero on either
// side). A bf16 gradient is widened in registers (exact: its bits shifted left by 16).
//
// Layout: each tensor is a contiguous (n) array; p, m, v f32, g f32 or bf16. The launch's descriptors
// (pointers, n, per-tensor coefficients) travel by value in the kernel parameters (LaunchArgs, < 4 KiB), so a
// step needs no device-side table, no allocation and no host-to-device copy.
//
// Shape: the tensors of a launch are cut into chunks of kChunk elements; chunk_end[k] is the running count of
// chunks up to and including tensor k. Blocks walk the chunks in a grid-stride loop (a 500M-element embedding
// and a 7-element bias share one launch, each block's work is one chunk of one tensor at a time) and find
// their tensor by advancing k monotonically (chunks are visited in increasing order by each block). Within a
// chunk, consecutive threads take consecutive float4s (coalesced 16-byte loads and stores of p, m, v, g; 8
// bytes for a bf16 g) when all four arrays of the tensor are aligned for it, else consecutive scalars. Chunk
// starts are multiples of 4 elements, so an aligned tensor stays aligned in every chunk; its last n % 4
// elements go through the scalar path. The kernel is memory bound (28 bytes moved per element with an f32
// gradient, 26 with bf16; two IEEE divisions and a square root are far below the H200's fp32 rate).
// Elementwise, no reductions: bitwise repeatable run to run whatever the grid.
#include <cstdint>

#include "adamw_cuda.cuh"

namespace adamw::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = int64_t{kThreads} * 4 * 8;  // 8192 elements: 8 float4 per thread
constexpr unsigned kMaxBlocks = 2048;                  // a constant, not read from the device

struct TensorDesc {
  float* p;
  float* m;
  float* v;
  const void* g;
  int64_t n;
  int32_t g_bf16;  // 0: f32 gradient, 1: bf16
  int32_t decayed;
  int32_t vec;  // all four arrays aligned for 4-wide loads
  float decay;
  float step_size;
  float bc2_sqrt;
};

struct LaunchArgs {
  TensorDesc t[kMaxTensorsPerLaunch];
  int64_t chunk_end[kMaxTensorsPerLaunch];  // running chunk count, inclusive of tensor k
  int32_t count;
  float w;
  float one_minus_w;
  float b2;
  float one_minus_b2;
  float eps;
  float grad_scale;
  int32_t scaled;
};
static_assert(sizeof(LaunchArgs) <= 4096,
              "the descriptors of one launch must fit in 4 KiB of kernel parameters");

// One element, in adamw_update.hpp's order of operations (see the header comment).
__device__ __forceinline__ void update_element(float& p, float& m, float& v, float g, const TensorDesc& t,
                                               const LaunchArgs& a) {
  const float gi = a.scaled ? __fmul_rn(g, a.grad_scale) : g;
  if (t.decayed) p = __fmul_rn(p, t.decay);
  m = a.w < 0.5f ? __fadd_rn(m, __fmul_rn(a.w, __fsub_rn(gi, m)))
                 : __fsub_rn(gi, __fmul_rn(__fsub_rn(gi, m), a.one_minus_w));
  v = __fadd_rn(__fmul_rn(v, a.b2), __fmul_rn(__fmul_rn(a.one_minus_b2, gi), gi));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), t.bc2_sqrt), a.eps);
  p = __fadd_rn(p, __fmul_rn(-t.step_size, __fdiv_rn(m, denom)));
}

__device__ __forceinline__ float bf16_bits_to_f32(uint32_t bits16) { return __uint_as_float(bits16 << 16); }

__device__ __forceinline__ float load_grad(const TensorDesc& t, int64_t i) {
  if (t.g_bf16) return bf16_bits_to_f32(static_cast<const uint16_t*>(t.g)[i]);
  return static_cast<const float*>(t.g)[i];
}

// Four gradients starting at element 4 * q (aligned: 16 bytes for f32, 8 for bf16).
__device__ __forceinline__ float4 load_grad4(const TensorDesc& t, int64_t q) {
  if (t.g_bf16) {
    const uint2 u = static_cast<const uint2*>(t.g)[q];  // elements 4q..4q+3, little-endian pairs
    return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u),
                       __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xffff0000u));
  }
  return static_cast<const float4*>(t.g)[q];
}

__device__ void update_chunk(const TensorDesc& t, const LaunchArgs& a, int64_t begin, int64_t end) {
  int64_t scalar_begin = begin;
  if (t.vec) {
    // begin is a multiple of 4 (kChunk is); [begin, end4) in float4s, the rest (< 4, last chunk only) below.
    const int64_t end4 = begin + ((end - begin) & ~int64_t{3});
    float4* __restrict__ p4 = reinterpret_cast<float4*>(t.p);
    float4* __restrict__ m4 = reinterpret_cast<float4*>(t.m);
    float4* __restrict__ v4 = reinterpret_cast<float4*>(t.v);
    for (int64_t q = begin / 4 + threadIdx.x; q < end4 / 4; q += blockDim.x) {
      float4 p = p4[q], m = m4[q], v = v4[q];
      const float4 g = load_grad4(t, q);
      update_element(p.x, m.x, v.x, g.x, t, a);
      update_element(p.y, m.y, v.y, g.y, t, a);
      update_element(p.z, m.z, v.z, g.z, t, a);
      update_element(p.w, m.w, v.w, g.w, t, a);
      p4[q] = p;
      m4[q] = m;
      v4[q] = v;
    }
    scalar_begin = end4;
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x) {
    float p = t.p[i], m = t.m[i], v = t.v[i];
    update_element(p, m, v, load_grad(t, i), t, a);
    t.p[i] = p;
    t.m[i] = m;
    t.v[i] = v;
  }
}

__global__ void __launch_bounds__(kThreads) fused_adamw_kernel(const __grid_constant__ LaunchArgs a) {
  const int64_t total = a.chunk_end[a.count - 1];
  int k = 0;
  for (int64_t c = blockIdx.x; c < total; c += gridDim.x) {
    while (c >= a.chunk_end[k]) ++k;  // c only grows, so k does too; empty tensors are stepped over
    const TensorDesc& t = a.t[k];
    const int64_t first = k == 0 ? 0 : a.chunk_end[k - 1];
    const int64_t begin = (c - first) * kChunk;
    const int64_t end = begin + kChunk < t.n ? begin + kChunk : t.n;
    update_chunk(t, a, begin, end);
  }
}

bool aligned(const void* ptr, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

}  // namespace

cudaError_t fused_step(cudaStream_t stream, const TensorArgs* tensors, int64_t count,
                       const SharedArgs& shared) {
  if (count < 0 || (count > 0 && tensors == nullptr)) return cudaErrorInvalidValue;
  for (int64_t i = 0; i < count; ++i) {
    const TensorArgs& t = tensors[i];
    if (t.n < 0) return cudaErrorInvalidValue;
    if (t.n > 0 && (t.p == nullptr || t.m == nullptr || t.v == nullptr || t.g == nullptr))
      return cudaErrorInvalidValue;
    if (t.g_type != GradType::F32 && t.g_type != GradType::BF16) return cudaErrorInvalidValue;
  }

  LaunchArgs a{};
  a.w = shared.w;
  a.one_minus_w = 1.0f - shared.w;  // in fp32, as adamw_update.hpp computes it
  a.b2 = shared.b2;
  a.one_minus_b2 = shared.one_minus_b2;
  a.eps = shared.eps;
  a.grad_scale = shared.grad_scale;
  a.scaled = shared.scaled;

  auto launch = [&]() -> cudaError_t {
    const int64_t total = a.chunk_end[a.count - 1];
    if (total == 0) return cudaSuccess;
    const unsigned blocks = total < kMaxBlocks ? static_cast<unsigned>(total) : kMaxBlocks;
    fused_adamw_kernel<<<blocks, kThreads, 0, stream>>>(a);
    return cudaGetLastError();
  };

  int64_t chunks = 0;
  for (int64_t i = 0; i < count; ++i) {
    const TensorArgs& in = tensors[i];
    TensorDesc& d = a.t[a.count];
    d.p = in.p;
    d.m = in.m;
    d.v = in.v;
    d.g = in.g;
    d.n = in.n;
    d.g_bf16 = in.g_type == GradType::BF16 ? 1 : 0;
    d.decayed = in.decayed != 0 ? 1 : 0;
    d.vec = aligned(in.p, 16) && aligned(in.m, 16) && aligned(in.v, 16) && aligned(in.g, d.g_bf16 ? 8 : 16);
    d.decay = in.decay;
    d.step_size = in.step_size;
    d.bc2_sqrt = in.bc2_sqrt;
    chunks += (in.n + kChunk - 1) / kChunk;
    a.chunk_end[a.count] = chunks;
    a.count += 1;
    if (a.count == kMaxTensorsPerLaunch || i + 1 == count) {
      if (const cudaError_t err = launch(); err != cudaSuccess) return err;
      a.count = 0;
      chunks = 0;
    }
  }
  return cudaSuccess;
}

}  // namespace adamw::cuda
