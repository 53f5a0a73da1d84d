#include "engine/host/dlpack_view.hpp"

namespace engine::host {

bool dlpack_view(const rt::Tensor& x, DLTensor& out) {
  DLTensor d{};
  d.data = x.raw_data();
  d.device.device_type = x.device().type() == rt::DeviceType::CPU ? kDLCPU : kDLCUDA;
  d.device.device_id = x.device().index();
  d.ndim = x.ndim();
  switch (x.dtype()) {
    case ENG_F32:
      d.dtype = {kDLFloat, 32, 1};
      break;
    case ENG_F64:
      d.dtype = {kDLFloat, 64, 1};
      break;
    case ENG_F16:
      d.dtype = {kDLFloat, 16, 1};
      break;
    case ENG_BF16:
      d.dtype = {kDLBfloat, 16, 1};
      break;
    case ENG_I32:
      d.dtype = {kDLInt, 32, 1};
      break;
    case ENG_I64:
      d.dtype = {kDLInt, 64, 1};
      break;
    case ENG_I8:
      d.dtype = {kDLInt, 8, 1};
      break;
    case ENG_U8:
    case ENG_BOOL:
      d.dtype = {kDLUInt, 8, 1};
      break;
    default:
      return false;
  }
  // shape and strides point into the tensor's own (immutable) TensorImpl, alive while the tensor is.
  d.shape = const_cast<int64_t*>(x.impl()->shape.d.data());
  d.strides = const_cast<int64_t*>(x.impl()->strides.d.data());
  d.byte_offset = 0;
  out = d;
  return true;
}

}  // namespace engine::host
