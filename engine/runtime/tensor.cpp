#include "engine/runtime/tensor.hpp"

#include <cmath>
#include <cstring>
#include <numeric>

#include "engine/core/error.hpp"
#include "engine/runtime/kernel_table.hpp"

namespace engine::rt {

// ---- Dims ----------------------------------------------------------------------------------------------

Dims::Dims(std::initializer_list<int64_t> values) {
  if (values.size() > static_cast<size_t>(kMaxDims)) fail("tensor rank {} exceeds the maximum {}", values.size(), kMaxDims);
  ndim = static_cast<int>(values.size());
  int i = 0;
  for (int64_t v : values) d[static_cast<size_t>(i++)] = v;
}

Dims Dims::from(const int64_t* values, int n) {
  if (n < 0 || n > kMaxDims) fail("tensor rank {} is outside 0..{}", n, kMaxDims);
  Dims r;
  r.ndim = n;
  for (int i = 0; i < n; ++i) r[i] = values[i];
  return r;
}

Dims Dims::from(const std::vector<int64_t>& values) { return from(values.data(), static_cast<int>(values.size())); }

int64_t Dims::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= d[static_cast<size_t>(i)];
  return n;
}

bool Dims::operator==(const Dims& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if ((*this)[i] != o[i]) return false;
  return true;
}

std::string Dims::str() const {
  std::string s = "(";
  for (int i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string((*this)[i]);
  }
  return s + (ndim == 1 ? ",)" : ")");
}

Dims contiguous_strides(const Dims& shape) {
  Dims s;
  s.ndim = shape.ndim;
  int64_t acc = 1;
  for (int i = shape.ndim - 1; i >= 0; --i) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

// ---- Storage -------------------------------------------------------------------------------------------

Storage::Storage(Device& device, size_t bytes) : device_(&device), data_(device.allocate(bytes)), bytes_(bytes) {}

Storage::Storage(Device& device, void* data, size_t bytes, std::shared_ptr<void> keep_alive)
    : device_(&device), data_(data), bytes_(bytes), keep_alive_(std::move(keep_alive)) {}

Storage::~Storage() {
  if (!keep_alive_ && !released_) device_->deallocate(data_, bytes_);
}

void* Storage::data() const {
  if (released_)
    fail("a tensor of {} bytes is used while its memory is released: {}", bytes_,
         released_why_ != nullptr ? released_why_
                                  : "it belongs to a sharded parameter that the parallel strategy has not gathered "
                                    "(an engine or strategy bug: gather before the block that uses it)");
  return data_;
}

void Storage::release_memory(const char* why) {
  if (keep_alive_) fail("Storage::release_memory: the memory is not owned by the engine (a mapped file)");
  if (released_) return;
  device_->deallocate(data_, bytes_);
  data_ = nullptr;
  released_ = true;
  released_why_ = why;
}

void Storage::adopt_memory(Storage& other) {
  if (!released_ || other.released_ || other.keep_alive_ || keep_alive_ || other.device_ != device_ ||
      other.bytes_ != bytes_)
    fail("Storage::adopt_memory: needs a released storage and an owned one of the same device and size "
         "({} and {} bytes)", bytes_, other.bytes_);
  data_ = other.data_;
  released_ = false;
  released_why_ = nullptr;
  other.data_ = nullptr;
  other.released_ = true;
}

void Storage::acquire_memory() {
  if (!released_) return;
  data_ = device_->allocate(bytes_);
  released_ = false;
}

// ---- element conversion for copies ---------------------------------------------------------------------

namespace {

std::shared_ptr<TensorImpl> make_impl(const Dims& shape, DType dtype, Device& device) {
  for (int i = 0; i < shape.ndim; ++i)
    if (shape[i] < 0) fail("negative dimension in shape {}", shape.str());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(device, static_cast<size_t>(shape.numel()) * dtype_size(dtype));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return impl;
}

}  // namespace

// ---- Tensor --------------------------------------------------------------------------------------------

Tensor Tensor::empty(const Dims& shape, DType dtype, Device& device) { return Tensor(make_impl(shape, dtype, device)); }

Tensor Tensor::zeros(const Dims& shape, DType dtype, Device& device) {
  Tensor t = empty(shape, dtype, device);
  device.fill_zero(t.raw_data(), t.nbytes());
  return t;
}

Tensor Tensor::full(const Dims& shape, DType dtype, Device& device, double value) {
  Tensor t = empty(shape, dtype, device);
  device.kernels().fill(t, value);
  return t;
}

Tensor Tensor::from_host(const Dims& shape, DType dtype, Device& device, const void* data, size_t bytes) {
  const size_t expect = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  if (bytes != expect)
    fail("tensor data of {} bytes does not match shape {} of {} ({} bytes)", bytes, shape.str(), dtype_name(dtype),
         expect);
  Tensor t = empty(shape, dtype, device);
  device.copy_from_host(t.raw_data(), data, bytes);
  return t;
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  const int j = i < 0 ? i + n : i;
  if (j < 0 || j >= n) fail("dimension {} is out of range for a tensor of rank {}", i, n);
  return impl_->shape[j];
}

bool Tensor::sole_owner() const {
  return impl_ && impl_.use_count() == 1 && impl_->storage && impl_->storage.use_count() == 1 &&
         !impl_->storage->borrowed() && is_contiguous();
}

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (int i = ndim() - 1; i >= 0; --i) {
    if (impl_->shape[i] != 1 && impl_->strides[i] != expect) return false;
    expect *= impl_->shape[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<std::byte*>(impl_->storage->data()) + impl_->offset * static_cast<int64_t>(element_size());
}

Tensor Tensor::view(const Dims& shape) const {
  if (!is_contiguous()) fail("view {} of a non-contiguous tensor {}: make it contiguous first", shape.str(), describe());
  Dims s = shape;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < s.ndim; ++i) {
    if (s[i] == -1) {
      if (infer >= 0) fail("view {}: only one dimension may be -1", shape.str());
      infer = i;
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel() % known != 0) fail("view {} does not fit a tensor of {} elements", shape.str(), numel());
    s[infer] = numel() / known;
  }
  if (s.numel() != numel()) fail("view {} has {} elements but the tensor {} has {}", s.str(), s.numel(), describe(), numel());
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->autograd.reset();
  impl->shape = s;
  impl->strides = contiguous_strides(s);
  return Tensor(impl);
}

Tensor Tensor::transposed(int dim0, int dim1) const {
  const int n = ndim();
  const int a = dim0 < 0 ? dim0 + n : dim0, b = dim1 < 0 ? dim1 + n : dim1;
  if (a < 0 || a >= n || b < 0 || b >= n) fail("transpose({}, {}) of a tensor of rank {}", dim0, dim1, n);
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->autograd.reset();
  std::swap(impl->shape[a], impl->shape[b]);
  std::swap(impl->strides[a], impl->strides[b]);
  return Tensor(impl);
}

Tensor Tensor::sliced(int dim, int64_t start, int64_t end) const {
  const int n = ndim();
  const int d = dim < 0 ? dim + n : dim;
  if (d < 0 || d >= n) fail("slice along dimension {} of a tensor of rank {}", dim, n);
  if (start < 0 || end < start || end > impl_->shape[d])
    fail("slice [{}, {}) is outside dimension {} of size {}", start, end, d, impl_->shape[d]);
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->autograd.reset();
  impl->offset += start * impl->strides[d];
  impl->shape[d] = end - start;
  return Tensor(impl);
}

Tensor Tensor::detached() const {
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->autograd.reset();
  return Tensor(impl);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype(), device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor t = empty(shape(), target, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to_device(Device& target) const {
  if (&target == &device()) return *this;
  Tensor t = empty(shape(), dtype(), target);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_to_host(void* dst, size_t bytes) const {
  if (bytes != nbytes()) fail("copy_to_host: {} bytes requested for {} ({} bytes)", bytes, describe(), nbytes());
  if (device().type() == DeviceType::CPU) {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = std::make_shared<Storage>(device(), dst, bytes, std::make_shared<int>(0));
    impl->shape = shape();
    impl->strides = contiguous_strides(shape());
    impl->dtype = dtype();
    device().kernels().copy(Tensor(impl), *this);
    return;
  }
  Tensor c = contiguous();
  device().copy_to_host(dst, c.raw_data(), bytes);
}

std::vector<double> Tensor::to_double_vector() const {
  Tensor c = to_device(cpu_device()).contiguous();
  std::vector<double> out(static_cast<size_t>(numel()));
  const auto* p = static_cast<const std::byte*>(c.raw_data());
  for (int64_t i = 0; i < numel(); ++i)
    out[static_cast<size_t>(i)] = load_as_double(p + i * static_cast<int64_t>(element_size()), dtype());
  return out;
}

std::vector<float> Tensor::to_float_vector() const {
  std::vector<double> d = to_double_vector();
  return {d.begin(), d.end()};
}

void Tensor::copy_from(const Tensor& src) {
  if (src.shape() != shape()) fail("copy of {} into {}: shapes differ", src.describe(), describe());
  if (&src.device() == &device()) {
    device().kernels().copy(*this, src);  // any strides, any dtype pair
    return;
  }
  if (src.device().type() != DeviceType::CPU && device().type() != DeviceType::CPU)
    fail("copy of {} into {}: copies between two accelerators go through the host (not supported yet)",
         src.describe(), describe());
  // Across host and device: the bytes move contiguous and in src's dtype; strides and dtype are settled by the
  // copy kernels on either side, so no element is converted on the wrong device.
  const Tensor s = src.contiguous();
  const bool direct = is_contiguous() && dtype() == src.dtype();
  Tensor staged = direct ? *this : empty(shape(), src.dtype(), device());
  if (src.device().type() == DeviceType::CPU)
    device().copy_from_host(staged.raw_data(), s.raw_data(), s.nbytes());
  else
    src.device().copy_to_host(staged.raw_data(), s.raw_data(), s.nbytes());
  if (!direct) device().kernels().copy(*this, staged);
}

double Tensor::item() const {
  if (numel() != 1) fail("item() of a tensor with {} elements", numel());
  return to_double_vector()[0];
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  std::string out = std::string(dtype_name(dtype())) + " " + shape().str() + " " + device_type_name(device().type());
  if (device().index() != 0) {  // a second GPU, a simulated device
    out.push_back(':');
    out.append(std::to_string(device().index()));
  }
  return out;
}

}  // namespace engine::rt
