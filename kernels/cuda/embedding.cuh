// Embedding on the GPU: row gather forward, deterministic scatter-add backward (no float atomics), and an id
// check that needs no host synchronisation. Mirrors kernels/cpu/embedding.hpp.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace engine::cuda {

// out[n, :] = table[ids[n], :]          table: (V, C), ids: (N) int32, out: (N, C)
// T: float, double, __nv_bfloat16 or __half, rows copied as stored. An id outside [0, V) gives a zero row
// instead of a read out of bounds (embedding_check_ids reports it).
template <typename T>
void embedding_forward(cudaStream_t stream, const T* table, const int32_t* ids, int64_t N, int64_t V,
                       int64_t C, T* out);

// Bytes of device workspace embedding_backward needs for N tokens (any V, C, T).
size_t embedding_backward_workspace_bytes(int64_t N);

// grad_table (V, C) = sum over tokens n with ids[n] == v of grad_out[n, :], fully overwritten (zero rows for
// ids that do not occur); ids outside [0, V) are skipped. Deterministic without float atomics: the (id,
// token) pairs are radix-sorted (stable, so equal ids keep token order) and each id's rows are summed in
// token order in fp32, by one thread per (id, column): bitwise identical run to run, and for float identical
// to the CPU reference. T: float or __nv_bfloat16. N < 2^31. workspace: embedding_backward_workspace_bytes(N)
// bytes of device memory (workspace_bytes says how many were given), used on `stream` only.
template <typename T>
void embedding_backward(cudaStream_t stream, const T* grad_out, const int32_t* ids, int64_t N, int64_t V,
                        int64_t C, T* grad_table, void* workspace, size_t workspace_bytes);

// *first_bad (one int64 on the device) = the first n with ids[n] outside [0, vocab), or -1 when all are
// valid, written on `stream` (the host reads it when it next synchronises; nothing here waits).
void embedding_check_ids(cudaStream_t stream, const int32_t* ids, int64_t n, int64_t vocab,
                         int64_t* first_bad);

}  // namespace engine::cuda
