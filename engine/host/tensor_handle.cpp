#include "engine/host/tensor_handle.hpp"

#include "engine/core/error.hpp"

namespace engine::host {

eng_tensor make_handle(rt::Tensor t) {
  if (!t.defined()) return nullptr;
  auto* h = new eng_tensor_s;
  h->tensor = std::move(t);
  return h;
}

const rt::Tensor& tensor_of(eng_tensor h, const char* what) {
  if (h == nullptr) fail("{}: the tensor handle is NULL", what);
  return h->tensor;
}

rt::Tensor optional_tensor(eng_tensor h) { return h == nullptr ? rt::Tensor() : h->tensor; }

void retain(eng_tensor h) {
  if (h != nullptr) h->refs.fetch_add(1, std::memory_order_relaxed);
}

void release(eng_tensor h) {
  if (h != nullptr && h->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete h;
}

}  // namespace engine::host
