// The host table's tensor entries: creation, host copies, reference counts, shape queries, the DLPack view,
// and raw device memory for plugins.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/core/error.hpp"
#include "engine/host/dlpack_view.hpp"
#include "engine/host/entry_args.hpp"
#include "engine/host/entry_guard.hpp"
#include "engine/host/host_entries.hpp"
#include "kernels/cpu/thread_pool.hpp"
#if ENGINE_HAVE_CUDA
#include "engine/runtime/devices/cuda/cuda_device.hpp"
#endif

namespace engine::host {

using rt::Tensor;

eng_status h_tensor_empty(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                          eng_tensor* out) {
  return op1(ctx, "tensor_empty", out, [&](HostSession& s, bool) {
    check_dtype(dtype);
    return Tensor::empty(dims_of(ndim, shape), dtype, device_for(ctx, s));
  });
}

eng_status h_tensor_zeros(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                          eng_tensor* out) {
  return op1(ctx, "tensor_zeros", out, [&](HostSession& s, bool) {
    check_dtype(dtype);
    return Tensor::zeros(dims_of(ndim, shape), dtype, device_for(ctx, s));
  });
}

eng_status h_tensor_from_host(const eng_ctx* ctx, eng_dtype dtype, int32_t ndim, const int64_t* shape,
                              const void* data, size_t bytes, eng_tensor* out) {
  return op1(ctx, "tensor_from_host", out, [&](HostSession& s, bool) {
    check_dtype(dtype);
    rt::Dims d = dims_of(ndim, shape);
    const size_t want = static_cast<size_t>(d.numel()) * rt::dtype_size(dtype);
    if (bytes != want)
      fail("{} bytes given for a {} tensor of shape {} ({} bytes)", bytes, rt::dtype_name(dtype), d.str(),
           want);
    if (data == nullptr && bytes > 0) fail("the data pointer is NULL");
    return Tensor::from_host(d, dtype, device_for(ctx, s), data, bytes);
  });
}

eng_status h_tensor_to_host(const eng_ctx* ctx, eng_tensor t, void* dst, size_t bytes) {
  return guarded(ctx, "tensor_to_host", [&] {
    const Tensor& x = tensor_of(t, "t");
    if (dst == nullptr && bytes > 0) fail("the destination pointer is NULL");
    x.copy_to_host(dst, bytes);
  });
}

void h_tensor_retain(eng_tensor t) { retain(t); }
void h_tensor_release(eng_tensor t) { release(t); }
int32_t h_tensor_ndim(eng_tensor t) { return t != nullptr ? t->tensor.ndim() : -1; }
int64_t h_tensor_dim(eng_tensor t, int32_t i) {
  if (t == nullptr) return -1;
  const int n = t->tensor.ndim();
  const int j = i < 0 ? i + n : i;
  return j >= 0 && j < n ? t->tensor.shape()[j] : -1;
}
eng_dtype h_tensor_dtype(eng_tensor t) { return t != nullptr ? t->tensor.dtype() : ENG_F32; }

eng_status h_tensor_dlpack(eng_tensor t, DLTensor* out) {
  if (t == nullptr || out == nullptr) return ENG_ERR_INVALID_ARGUMENT;
  return dlpack_view(t->tensor, *out) ? ENG_OK : ENG_ERR_UNSUPPORTED;
}

eng_status h_device_alloc(const eng_ctx* ctx, size_t bytes, void** out) {
  return guarded(ctx, "device_alloc", [&] {
    if (out == nullptr) fail("the output pointer is NULL");
    *out = nullptr;
    *out = session_of(ctx).device_alloc(bytes);
  });
}

eng_status h_device_properties(const eng_ctx* ctx, eng_device_properties* out) {
  return guarded(ctx, "device_properties", [&] {
    if (out == nullptr) fail("the output pointer is NULL");
    if (out->struct_size < offsetof(eng_device_properties, name) + 1)
      fail("eng_device_properties.struct_size is {}: set it to sizeof(eng_device_properties)",
           out->struct_size);
    eng_device_properties p{};
    p.struct_size = sizeof(p);
    rt::Device& d = session_of(ctx).device();
    p.device_type = static_cast<eng_device_type>(d.type());
    p.device_index = d.index();
    p.total_memory = d.total_memory();
    std::string name = "cpu";
#if ENGINE_HAVE_CUDA
    if (d.type() == rt::DeviceType::CUDA) {
      auto& c = static_cast<rt::CudaDevice&>(d);
      p.sm_count = c.sm_count();
      p.compute_capability = c.compute_capability();
      name = c.name();
    }
#endif
    if (d.type() == rt::DeviceType::CPU && d.thread_pool() != nullptr) p.sm_count = d.thread_pool()->size();
    std::snprintf(p.name, sizeof(p.name), "%s", name.c_str());
    const uint32_t n = std::min<uint32_t>(out->struct_size, sizeof(p));
    std::memcpy(out, &p, n);
    out->struct_size = n;
  });
}

void h_device_free(const eng_ctx* ctx, void* ptr) {
  guarded(ctx, "device_free", [&] { session_of(ctx).device_free(ptr); });
}

}  // namespace engine::host
