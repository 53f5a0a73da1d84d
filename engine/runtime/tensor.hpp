// Tensor: a strided view of refcounted device storage.
//
// A Tensor is a cheap handle (shared_ptr to TensorImpl). Views (reshape of a contiguous tensor, transpose,
// slice) share storage and differ in shape/strides/offset; strides and offset are in elements. Autograd
// bookkeeping lives in TensorImpl::autograd (engine/runtime/autograd.hpp), empty for tensors that are not
// recorded. A default-constructed Tensor is "undefined" (used for absent gradients and optional inputs).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/runtime/device.hpp"
#include "engine/runtime/dtype.hpp"

namespace engine::rt {

constexpr int kMaxDims = ENG_MAX_DIMS;

// A shape or a stride vector of at most kMaxDims entries, stored inline.
struct Dims {
  int ndim = 0;
  std::array<int64_t, kMaxDims> d{};

  Dims() = default;
  Dims(std::initializer_list<int64_t> values);
  static Dims from(const int64_t* values, int n);
  static Dims from(const std::vector<int64_t>& values);

  int64_t& operator[](int i) { return d[static_cast<size_t>(i)]; }
  int64_t operator[](int i) const { return d[static_cast<size_t>(i)]; }
  int64_t numel() const;                 // product (1 for ndim 0)
  int size() const { return ndim; }
  const int64_t* begin() const { return d.data(); }
  const int64_t* end() const { return d.data() + ndim; }
  std::vector<int64_t> vec() const { return {begin(), end()}; }
  bool operator==(const Dims& o) const;
  bool operator!=(const Dims& o) const { return !(*this == o); }
  std::string str() const;               // "(2, 3, 4)"
};

// Row-major strides of a shape.
Dims contiguous_strides(const Dims& shape);

class Storage {
 public:
  Storage(Device& device, size_t bytes);
  // Wraps memory owned elsewhere (e.g. an mmap'd file); `keep_alive` is held until the storage dies.
  Storage(Device& device, void* data, size_t bytes, std::shared_ptr<void> keep_alive);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  Device& device() const { return *device_; }
  // Throws while the memory is released (a tensor used outside its parameter's gather, see below).
  void* data() const;
  size_t bytes() const { return bytes_; }

  // The parallel strategy's parameter placement (FSDP's trick): the memory is given back to the device while
  // every Tensor and view of this storage stays valid (the tape's saved references to a full parameter), and
  // acquired again (contents undefined until refilled, e.g. by an all-gather) before it is used. Only for
  // storage this object allocated.
  // `why` (static text) names, in the error a use of the released memory raises, what released it.
  void release_memory(const char* why = nullptr);
  void acquire_memory();
  // A released storage takes `other`'s memory (same device and size, owned, not released), which `other` gives
  // up: how a recomputed value moves into the storage every view of the original shares, without a copy.
  void adopt_memory(Storage& other);
  bool released() const { return released_; }
  bool borrowed() const { return keep_alive_ != nullptr; }  // wraps memory owned elsewhere

 private:
  Device* device_;
  void* data_;
  size_t bytes_;
  std::shared_ptr<void> keep_alive_;  // non-null: memory not ours to free
  bool released_ = false;
  const char* released_why_ = nullptr;
};

struct AutogradMeta;  // engine/runtime/autograd.hpp

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Dims shape;
  Dims strides;
  int64_t offset = 0;  // elements
  DType dtype = ENG_F32;
  std::shared_ptr<AutogradMeta> autograd;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // New contiguous tensors.
  static Tensor empty(const Dims& shape, DType dtype, Device& device);
  static Tensor zeros(const Dims& shape, DType dtype, Device& device);
  static Tensor full(const Dims& shape, DType dtype, Device& device, double value);
  // Copies `bytes` bytes of contiguous host data of `dtype` into a new tensor on `device`.
  static Tensor from_host(const Dims& shape, DType dtype, Device& device, const void* data, size_t bytes);
  template <typename T>
  static Tensor from_vector(const Dims& shape, DType dtype, Device& device, const std::vector<T>& values) {
    return from_host(shape, dtype, device, values.data(), values.size() * sizeof(T));
  }

  bool defined() const { return impl_ != nullptr; }
  explicit operator bool() const { return defined(); }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  const Dims& shape() const { return impl_->shape; }
  const Dims& strides() const { return impl_->strides; }
  int ndim() const { return impl_->shape.ndim; }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return impl_->shape.numel(); }
  int64_t offset() const { return impl_->offset; }
  DType dtype() const { return impl_->dtype; }
  size_t element_size() const { return dtype_size(impl_->dtype); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  Device& device() const { return impl_->storage->device(); }
  bool is_contiguous() const;
  // This handle is the only one on its memory: no other tensor, view or caller sees it change, so an op may
  // write its result over it (contiguous memory this tensor's storage allocated).
  bool sole_owner() const;

  // Pointer to element 0 (storage base + offset). For CPU tensors this is host memory.
  void* raw_data() const;
  template <typename T>
  T* data() const { return static_cast<T*>(raw_data()); }

  // Views sharing storage (no copy). view() needs a contiguous tensor; one entry of -1 is inferred.
  Tensor view(const Dims& shape) const;
  Tensor transposed(int dim0, int dim1) const;
  Tensor sliced(int dim, int64_t start, int64_t end) const;  // [start, end)
  // A view without autograd metadata (same storage).
  Tensor detached() const;

  // Copies (always new storage): contiguous copy, dtype conversion, host round trips.
  Tensor contiguous() const;  // returns *this when already contiguous
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to_device(Device& device) const;
  // Copies into contiguous host memory (converting nothing); bytes must equal nbytes().
  void copy_to_host(void* dst, size_t bytes) const;
  // Values converted to double / float, row-major (for tests and small reductions).
  std::vector<double> to_double_vector() const;
  std::vector<float> to_float_vector() const;
  // Copies src into this tensor (same shape; converts dtype; any strides on both sides).
  void copy_from(const Tensor& src);
  // The single value of a one-element tensor, as double.
  double item() const;

  std::string describe() const;  // "f32 (2, 3) cpu"

 private:
  std::shared_ptr<TensorImpl> impl_;
};

}  // namespace engine::rt
