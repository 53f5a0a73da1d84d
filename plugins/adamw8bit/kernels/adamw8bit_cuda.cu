// Multi-tensor 8-bit blockwise AdamW: the GPU twin of adamw8bit::update_8bit / update_32bit
// (plugins/adamw8bit/blockwise8.hpp, which documents the math and is the reference). One CUDA block of 256
// threads per quantization block of 256 elements, one element per thread: dequantize m and v from the codes
// (both maps in shared memory), update in fp32 with explicitly rounded intrinsics in the reference's order
// (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn: no FMA contraction, IEEE division and square root), reduce the
// block's new absmax (max is exact in any order), write p, and quantize m / absmax and v / absmax with the same
// binary search as the CPU's nearest_code. So the codes, absmax values and parameters equal the CPU's bit for
// bit. The maps and the descriptors of up to kMaxTensorsPerLaunch tensors travel in the kernel arguments
// (< 4 KiB): no device table, no allocation, no copy. Blocks of a launch find their tensor through the running
// block counts. fp32-state tensors (fewer elements than min_8bit_size) go through the same kernel without the
// re-quantization.
#include <cstdint>

#include "adamw8bit_cuda.cuh"

namespace adamw8bit::cuda {
namespace {

constexpr int kThreads = 256;  // = the quantization block
constexpr unsigned kMaxBlocks = 65535u * 16u;

struct Desc {
  float* p;
  const void* g;
  void* s1;
  void* s2;
  float* a1;
  float* a2;
  int64_t n;
  int32_t g_bf16;
  int32_t state_8bit;
  int32_t decayed;
  float decay;
  float step_size;
  float bc2_sqrt;
};

struct LaunchArgs {
  float map1[256];
  float map2[256];
  Desc t[kMaxTensorsPerLaunch];
  int64_t block_end[kMaxTensorsPerLaunch];  // running block count, inclusive of tensor k
  int32_t count;
  float b1, one_minus_b1, b2, one_minus_b2, eps, grad_scale;
  int32_t scaled;
};
static_assert(sizeof(LaunchArgs) <= 4096, "the arguments of one launch must fit in 4 KiB");

__device__ __forceinline__ unsigned nearest_code(const float* code, float x) {
  int i = 0;
#pragma unroll
  for (int step = 128; step >= 1; step >>= 1) {
    if (code[i + step] <= x) i += step;
  }
  if (i < 255 && fabsf(__fsub_rn(x, code[i + 1])) < fabsf(__fsub_rn(x, code[i]))) ++i;
  return static_cast<unsigned>(i);
}

__device__ __forceinline__ float block_max(float x, float* scratch) {
  for (int off = 16; off > 0; off >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  float r = scratch[0];
#pragma unroll
  for (int w = 1; w < kThreads / 32; ++w) r = fmaxf(r, scratch[w]);
  return r;
}

__global__ void __launch_bounds__(kThreads) adamw8bit_kernel(const __grid_constant__ LaunchArgs a) {
  __shared__ float map1[256];
  __shared__ float map2[256];
  __shared__ float red1[kThreads / 32];
  __shared__ float red2[kThreads / 32];
  map1[threadIdx.x] = a.map1[threadIdx.x];
  map2[threadIdx.x] = a.map2[threadIdx.x];
  __syncthreads();
  const int64_t total = a.block_end[a.count - 1];
  int k = 0;
  for (int64_t blk = blockIdx.x; blk < total; blk += gridDim.x) {
    while (blk >= a.block_end[k]) ++k;
    const Desc& t = a.t[k];
    const int64_t b = blk - (k == 0 ? 0 : a.block_end[k - 1]);
    const int64_t i = b * kThreads + threadIdx.x;
    const bool live = i < t.n;
    float m = 0.0f, v = 0.0f, p = 0.0f, g = 0.0f;
    if (live) {
      if (t.state_8bit) {
        m = __fmul_rn(map1[static_cast<const uint8_t*>(t.s1)[i]], t.a1[b]);
        v = __fmul_rn(map2[static_cast<const uint8_t*>(t.s2)[i]], t.a2[b]);
      } else {
        m = static_cast<const float*>(t.s1)[i];
        v = static_cast<const float*>(t.s2)[i];
      }
      g = t.g_bf16 ? __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(t.g)[i]) << 16)
                   : static_cast<const float*>(t.g)[i];
      if (a.scaled) g = __fmul_rn(g, a.grad_scale);
      m = __fadd_rn(__fmul_rn(m, a.b1), __fmul_rn(g, a.one_minus_b1));
      v = __fadd_rn(__fmul_rn(v, a.b2), __fmul_rn(__fmul_rn(a.one_minus_b2, g), g));
      const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), t.bc2_sqrt), a.eps);
      p = t.p[i];
      if (t.decayed) p = __fmul_rn(p, t.decay);
      p = __fadd_rn(p, __fmul_rn(t.step_size, __fdiv_rn(m, denom)));
      t.p[i] = p;
    }
    if (t.state_8bit) {
      float mx1 = block_max(live ? fabsf(m) : 0.0f, red1);
      float mx2 = block_max(live ? fabsf(v) : 0.0f, red2);
      if (mx1 == 0.0f) mx1 = 1.0f;
      if (mx2 == 0.0f) mx2 = 1.0f;
      if (live) {
        static_cast<uint8_t*>(t.s1)[i] = static_cast<uint8_t>(nearest_code(map1, __fdiv_rn(m, mx1)));
        static_cast<uint8_t*>(t.s2)[i] = static_cast<uint8_t>(nearest_code(map2, __fdiv_rn(v, mx2)));
      }
      if (threadIdx.x == 0) {
        t.a1[b] = mx1;
        t.a2[b] = mx2;
      }
      __syncthreads();  // red1/red2 are reused by the next block of this loop
    } else if (live) {
      static_cast<float*>(t.s1)[i] = m;
      static_cast<float*>(t.s2)[i] = v;
    }
  }
}

}  // namespace

cudaError_t step(cudaStream_t stream, const TensorArgs* tensors, int64_t count, const SharedArgs& shared) {
  if (count < 0 || (count > 0 && tensors == nullptr) || shared.map1 == nullptr || shared.map2 == nullptr)
    return cudaErrorInvalidValue;
  for (int64_t i = 0; i < count; ++i) {
    const TensorArgs& t = tensors[i];
    if (t.n < 0) return cudaErrorInvalidValue;
    if (t.n > 0 && (t.p == nullptr || t.g == nullptr || t.s1 == nullptr || t.s2 == nullptr ||
                    (t.state_8bit && (t.a1 == nullptr || t.a2 == nullptr))))
      return cudaErrorInvalidValue;
    if (t.g_type != GradType::F32 && t.g_type != GradType::BF16) return cudaErrorInvalidValue;
  }
  LaunchArgs a{};
  for (int i = 0; i < 256; ++i) {
    a.map1[i] = shared.map1[i];
    a.map2[i] = shared.map2[i];
  }
  a.b1 = shared.b1;
  a.one_minus_b1 = shared.one_minus_b1;
  a.b2 = shared.b2;
  a.one_minus_b2 = shared.one_minus_b2;
  a.eps = shared.eps;
  a.grad_scale = shared.grad_scale;
  a.scaled = shared.scaled;
  int64_t blocks = 0;
  for (int64_t i = 0; i < count; ++i) {
    const TensorArgs& in = tensors[i];
    Desc& d = a.t[a.count];
    d.p = in.p;
    d.g = in.g;
    d.s1 = in.s1;
    d.s2 = in.s2;
    d.a1 = in.a1;
    d.a2 = in.a2;
    d.n = in.n;
    d.g_bf16 = in.g_type == GradType::BF16 ? 1 : 0;
    d.state_8bit = in.state_8bit != 0 ? 1 : 0;
    d.decayed = in.decayed != 0 ? 1 : 0;
    d.decay = in.decay;
    d.step_size = in.step_size;
    d.bc2_sqrt = in.bc2_sqrt;
    blocks += (in.n + kThreads - 1) / kThreads;
    a.block_end[a.count] = blocks;
    a.count += 1;
    if (a.count == kMaxTensorsPerLaunch || i + 1 == count) {
      if (blocks > 0) {
        const unsigned grid = blocks < kMaxBlocks ? static_cast<unsigned>(blocks) : kMaxBlocks;
        adamw8bit_kernel<<<grid, kThreads, 0, stream>>>(a);
        if (const cudaError_t err = cudaGetLastError(); err != cudaSuccess) return err;
      }
      a.count = 0;
      blocks = 0;
    }
  }
  return cudaSuccess;
}

}  // namespace adamw8bit::cuda
