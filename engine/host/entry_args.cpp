#include "engine/host/entry_args.hpp"

#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"

namespace engine::host {

rt::Device& device_for(const eng_ctx* ctx, HostSession& s) {
  if (ctx->device_type != static_cast<eng_device_type>(s.device().type()))
    fail_with(ENG_ERR_UNSUPPORTED, "the context asks for device type {} but this run's device is {}",
              ctx->device_type, rt::device_type_name(s.device().type()));
  return s.device();
}

rt::Dims dims_of(int32_t ndim, const int64_t* shape) {
  if (ndim < 0 || ndim > ENG_MAX_DIMS) fail("rank {} is outside 0..{}", ndim, ENG_MAX_DIMS);
  if (ndim > 0 && shape == nullptr) fail("the shape pointer is NULL for rank {}", ndim);
  rt::Dims d = rt::Dims::from(shape, ndim);
  for (int i = 0; i < ndim; ++i)
    if (d[i] < 0) fail("shape {} has a negative dimension", d.str());
  return d;
}

void check_dtype(eng_dtype dtype) {
  if (dtype > ENG_BOOL) fail("unknown dtype {}", dtype);
}

rt::Param& param_arg(eng_param p, const char* what) {
  if (p == nullptr) fail("the {} parameter handle is NULL", what);
  return param_of(p);
}

rt::StateDict& state_arg(eng_state st) {
  if (st == nullptr) fail("the state dictionary handle is NULL");
  return *reinterpret_cast<rt::StateDict*>(st);
}

}  // namespace engine::host
