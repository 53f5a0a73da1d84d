// The nf4 plugin's dequantize kernel on the GPU (nf4_cuda.cu), host-callable plain C++. Built only with the CUDA
// backend. Returns the cudaError_t of the launch (cudaErrorInvalidValue for a bad argument, before launching).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nf4::cuda {

// The quantized storage of one weight on the device (nf4_format.hpp): n elements, packed (ceil(n / 2)) bytes
// (the first element of each pair in the high nibble), and per block of `blocksize` either absmax (f32) or,
// double-quantized, absmax_codes (u8) into the signed dynamic map `nested_code` (256 f32, copied into the
// launch's arguments) with nested_absmax (f32, per 256 blocks) and offset.
struct Weight {
  const uint8_t* packed = nullptr;
  int64_t n = 0;
  int64_t blocksize = 64;
  const float* absmax = nullptr;         // plain absmax, or nullptr when double-quantized
  const uint8_t* absmax_codes = nullptr;  // double quantization
  const float* nested_absmax = nullptr;
  float offset = 0.0f;
  const float* nested_code = nullptr;  // host pointer, 256 values
};

// out: n f32 values (out_bf16 == false) or n bf16 values (true), code[q] * absmax rounded once to the output.
cudaError_t dequantize(cudaStream_t stream, const Weight& w, void* out, bool out_bf16);

// Quantizes n values (f32, or bf16 when in_bf16) on the GPU exactly as nf4::quantize does on the CPU: packed
// (ceil(n / 2)) bytes and absmax (ceil(n / blocksize)) f32, both device arrays. One thread per block.
cudaError_t quantize(cudaStream_t stream, const void* in, bool in_bf16, int64_t n, int64_t blocksize,
                     uint8_t* packed, float* absmax);

}  // namespace nf4::cuda
