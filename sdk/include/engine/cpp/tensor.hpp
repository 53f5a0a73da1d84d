// engine/cpp/tensor.hpp: engine::sdk::Tensor, an owning reference to an engine tensor (eng_tensor).
// Copying retains, destruction releases; shape and dtype queries go straight to the host table.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/abi/engine.h"
#include "engine/cpp/dtype.hpp"
#include "engine/cpp/error.hpp"

namespace engine::sdk {

class Tensor {
 public:
  Tensor() = default;
  // Takes over one reference the caller owns (what an op returned through an out-parameter).
  static Tensor adopt(const eng_host_api* api, eng_tensor t) noexcept { return Tensor(api, t); }
  // Borrows a handle the engine passed in (a batch field, an op input): retains it.
  static Tensor borrow(const eng_host_api* api, eng_tensor t) noexcept {
    if (t != nullptr) api->tensor_retain(t);
    return Tensor(api, t);
  }

  Tensor(const Tensor& o) noexcept : api_(o.api_), t_(o.t_) {
    if (t_ != nullptr) api_->tensor_retain(t_);
  }
  Tensor(Tensor&& o) noexcept : api_(o.api_), t_(std::exchange(o.t_, nullptr)) {}
  Tensor& operator=(Tensor o) noexcept {
    std::swap(api_, o.api_);
    std::swap(t_, o.t_);
    return *this;
  }
  ~Tensor() { reset(); }

  void reset() noexcept {
    if (t_ != nullptr) api_->tensor_release(t_);
    t_ = nullptr;
  }
  // Gives the reference away (to return it through an ABI out-parameter).
  eng_tensor release() noexcept { return std::exchange(t_, nullptr); }
  eng_tensor get() const noexcept { return t_; }
  const eng_host_api* api() const noexcept { return api_; }
  explicit operator bool() const noexcept { return t_ != nullptr; }

  int32_t ndim() const { return api_->tensor_ndim(checked()); }
  // Size of dimension i; negative i counts from the end.
  int64_t dim(int32_t i) const { return api_->tensor_dim(checked(), i); }
  std::vector<int64_t> shape() const {
    std::vector<int64_t> s(static_cast<size_t>(ndim()));
    for (size_t i = 0; i < s.size(); ++i) s[i] = dim(static_cast<int32_t>(i));
    return s;
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape()) n *= d;
    return n;
  }
  eng_dtype dtype() const { return api_->tensor_dtype(checked()); }

  // The raw DLPack view; valid while this tensor is alive. Strides are in elements.
  DLTensor dlpack() const {
    DLTensor view{};
    eng_status s = api_->tensor_dlpack(checked(), &view);
    if (s != ENG_OK) throw Error(std::string("tensor_dlpack failed: ") + status_name(s), s);
    return view;
  }
  bool is_contiguous() const {
    DLTensor v = dlpack();
    if (v.strides == nullptr) return true;
    int64_t expected = 1;
    for (int32_t i = v.ndim - 1; i >= 0; --i) {
      if (v.shape[i] != 1 && v.strides[i] != expected) return false;
      expected *= v.shape[i];
    }
    return true;
  }
  bool is_cpu() const { return dlpack().device.device_type == kDLCPU; }

  // Typed pointer to the first element of a CPU tensor whose dtype is T (checked). Use is_contiguous()
  // (or ops.contiguous) before treating it as a flat array.
  template <typename T>
  T* data() const {
    DLTensor v = dlpack();
    if (v.device.device_type != kDLCPU)
      throw Error("Tensor::data: the tensor is not on the CPU", ENG_ERR_UNSUPPORTED);
    if (dtype() != dtype_of<T>::value) {
      throw Error(std::string("Tensor::data: the tensor holds ") + dtype_name(dtype()) + ", not " +
                      dtype_name(dtype_of<T>::value),
                  ENG_ERR_INVALID_ARGUMENT);
    }
    return reinterpret_cast<T*>(static_cast<char*>(v.data) + v.byte_offset);
  }

 private:
  Tensor(const eng_host_api* api, eng_tensor t) noexcept : api_(api), t_(t) {}
  eng_tensor checked() const {
    if (t_ == nullptr) throw Error("use of an empty engine::sdk::Tensor", ENG_ERR_INTERNAL);
    return t_;
  }

  const eng_host_api* api_ = nullptr;
  eng_tensor t_ = nullptr;
};

}  // namespace engine::sdk
