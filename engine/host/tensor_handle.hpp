// eng_tensor handles: the refcounted wrapper around an rt::Tensor that crosses the ABI. A handle is created
// with one reference (make_handle) that the receiver owns; tensor_retain/tensor_release adjust it and the
// last release deletes the wrapper (the tensor's storage lives on while other Tensors share it).
#pragma once

#include <atomic>

#include "engine/abi/engine.h"
#include "engine/runtime/tensor.hpp"

struct eng_tensor_s {
  std::atomic<int32_t> refs{1};
  engine::rt::Tensor tensor;
};

namespace engine::host {

// A new handle with one reference (nullptr for an undefined tensor).
eng_tensor make_handle(rt::Tensor t);
// The tensor behind a handle; throws engine::Error naming `what` when the handle is NULL.
const rt::Tensor& tensor_of(eng_tensor h, const char* what);
// The tensor, or an undefined one for NULL (optional inputs).
rt::Tensor optional_tensor(eng_tensor h);
void retain(eng_tensor h);
void release(eng_tensor h);  // NULL accepted

// Owns one reference for a scope (handles the engine passes to a plugin and takes back).
class OwnedHandle {
 public:
  OwnedHandle() = default;
  explicit OwnedHandle(eng_tensor h) : h_(h) {}
  explicit OwnedHandle(rt::Tensor t) : h_(make_handle(std::move(t))) {}
  ~OwnedHandle() { release(h_); }
  OwnedHandle(OwnedHandle&& o) noexcept : h_(o.h_) { o.h_ = nullptr; }
  OwnedHandle& operator=(OwnedHandle&& o) noexcept {
    if (this != &o) {
      release(h_);
      h_ = o.h_;
      o.h_ = nullptr;
    }
    return *this;
  }
  OwnedHandle(const OwnedHandle&) = delete;
  OwnedHandle& operator=(const OwnedHandle&) = delete;
  eng_tensor get() const { return h_; }
  eng_tensor* out() { return &h_; }  // for out-parameters (must be empty)

 private:
  eng_tensor h_ = nullptr;
};

}  // namespace engine::host
