// NF4 dequantization on the GPU, the twin of nf4::dequantize / dequantize_absmax (plugins/nf4/nf4_format.hpp):
// one thread per packed byte (two elements), the 16 codes and the 256 nested codes in the kernel arguments,
// absmax per block recomputed from the double-quantized codes in fp32 (__fmul_rn, __fadd_rn: no FMA, so the
// values equal the CPU's), the product code * absmax rounded once to f32 or bf16 (round to nearest even).
#include <cuda_bf16.h>

#include <cstdint>

#include "nf4_cuda.cuh"
#include "plugins/nf4/nf4_format.hpp"

namespace nf4::cuda {
namespace {

struct Args {
  float code[16];
  float nested_code[256];
  const uint8_t* packed;
  const float* absmax;
  const uint8_t* absmax_codes;
  const float* nested_absmax;
  void* out;
  int64_t n;
  int64_t blocksize;
  float offset;
  int32_t out_bf16;
};

using nf4::kCode;  // the code book of nf4_format.hpp, copied into the launch arguments on the host

__device__ __forceinline__ float block_absmax(const Args& a, int64_t block) {
  if (a.absmax != nullptr) return a.absmax[block];
  return __fadd_rn(__fmul_rn(a.nested_code[a.absmax_codes[block]], a.nested_absmax[block / 256]), a.offset);
}

__device__ __forceinline__ void store(const Args& a, int64_t k, float v) {
  if (a.out_bf16) {
    static_cast<__nv_bfloat16*>(a.out)[k] = __float2bfloat16_rn(v);
  } else {
    static_cast<float*>(a.out)[k] = v;
  }
}

__global__ void dequant_kernel(const __grid_constant__ Args a) {
  const int64_t bytes = (a.n + 1) / 2;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < bytes;
       i += int64_t{gridDim.x} * blockDim.x) {
    const uint8_t byte = a.packed[i];
    const int64_t k0 = 2 * i, k1 = 2 * i + 1;
    store(a, k0, __fmul_rn(a.code[byte >> 4], block_absmax(a, k0 / a.blocksize)));
    if (k1 < a.n) store(a, k1, __fmul_rn(a.code[byte & 0xF], block_absmax(a, k1 / a.blocksize)));
  }
}

struct QuantArgs {
  float bounds[15];
  const void* in;
  uint8_t* packed;
  float* absmax;
  int64_t n;
  int64_t blocksize;
  int32_t in_bf16;
};

__device__ __forceinline__ float load_in(const QuantArgs& a, int64_t k) {
  if (a.in_bf16) return __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(a.in)[k]) << 16);
  return static_cast<const float*>(a.in)[k];
}

// One thread per quantization block; blocks start at even elements (blocksize is even), so each byte belongs to
// one thread, except for an odd n, whose last byte only this block's thread writes.
__global__ void quant_kernel(const __grid_constant__ QuantArgs a) {
  const int64_t blocks = (a.n + a.blocksize - 1) / a.blocksize;
  const int64_t full = a.n - a.n % a.blocksize;
  for (int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; b < blocks; b += int64_t{gridDim.x} * blockDim.x) {
    const int64_t begin = b * a.blocksize;
    const int64_t end = begin + a.blocksize < a.n ? begin + a.blocksize : a.n;
    float am = 0.0f;
    for (int64_t k = begin; k < end; ++k) am = fmaxf(am, fabsf(load_in(a, k)));
    const float safe = fmaxf(am, 1e-38f);
    a.absmax[b] = begin < full ? am : safe;
    const float inv = __fdiv_rn(1.0f, safe);
    uint8_t pending = 0;
    for (int64_t k = begin; k < end; ++k) {
      const float x = load_in(a, k);
      const float s = fminf(1.0f, fmaxf(-1.0f, begin < full ? __fmul_rn(x, inv) : __fdiv_rn(x, safe)));
      int q = 0;
#pragma unroll
      for (int i = 0; i < 15; ++i) q += a.bounds[i] < s ? 1 : 0;
      if (k % 2 == 0) {
        pending = static_cast<uint8_t>(q << 4);
        if (k + 1 == a.n) a.packed[k / 2] = pending;
      } else {
        a.packed[k / 2] = static_cast<uint8_t>(pending | q);
      }
    }
  }
}

}  // namespace

cudaError_t quantize(cudaStream_t stream, const void* in, bool in_bf16, int64_t n, int64_t blocksize,
                     uint8_t* packed, float* absmax) {
  if (n < 0 || blocksize <= 0 || blocksize % 2 != 0 || (n > 0 && (in == nullptr || packed == nullptr || absmax == nullptr)))
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  QuantArgs a{};
  for (int i = 0; i < 15; ++i) a.bounds[i] = (kCode[i] + kCode[i + 1]) / 2.0f;  // host IEEE fp32, as nf4_bounds()
  a.in = in;
  a.packed = packed;
  a.absmax = absmax;
  a.n = n;
  a.blocksize = blocksize;
  a.in_bf16 = in_bf16 ? 1 : 0;
  constexpr int kThreads = 128;
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  const int64_t want = (blocks + kThreads - 1) / kThreads;
  quant_kernel<<<static_cast<unsigned>(want < 65535 * 8 ? want : 65535 * 8), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t dequantize(cudaStream_t stream, const Weight& w, void* out, bool out_bf16) {
  if (w.n < 0 || w.blocksize <= 0 || (w.n > 0 && (w.packed == nullptr || out == nullptr))) return cudaErrorInvalidValue;
  const bool dq = w.absmax == nullptr;
  if (w.n > 0 && dq && (w.absmax_codes == nullptr || w.nested_absmax == nullptr || w.nested_code == nullptr))
    return cudaErrorInvalidValue;
  if (w.n == 0) return cudaSuccess;
  Args a{};
  for (int i = 0; i < 16; ++i) a.code[i] = kCode[i];
  if (dq)
    for (int i = 0; i < 256; ++i) a.nested_code[i] = w.nested_code[i];
  a.packed = w.packed;
  a.absmax = w.absmax;
  a.absmax_codes = w.absmax_codes;
  a.nested_absmax = w.nested_absmax;
  a.out = out;
  a.n = w.n;
  a.blocksize = w.blocksize;
  a.offset = w.offset;
  a.out_bf16 = out_bf16 ? 1 : 0;
  constexpr int kThreads = 256;
  const int64_t bytes = (w.n + 1) / 2;
  const int64_t want = (bytes + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(want < 65535 * 8 ? want : 65535 * 8);
  dequant_kernel<<<blocks, kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace nf4::cuda
