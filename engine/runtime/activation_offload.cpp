#include "engine/runtime/activation_offload.hpp"

#include "engine/core/error.hpp"
#include "engine/runtime/device.hpp"

namespace engine::rt {

ActivationOffload::~ActivationOffload() {
  try {
    reset();
  } catch (...) {
  }
  for (HostBuffer& b : pool_) b.device->host_pinned_free(b.ptr, b.bytes);
}

bool ActivationOffload::wants(const Tensor& t) const {
  return t.defined() && t.is_contiguous() && t.nbytes() >= min_bytes_;
}

bool ActivationOffload::wants_storage(const Storage* st) const {
  return st != nullptr && !st->released() && !st->borrowed() && st->bytes() >= min_bytes_;
}

size_t ActivationOffload::acquire(Device& device, size_t bytes) {
  // Block inputs all have one size, so an exact match is the common case; a larger free buffer serves too.
  size_t best = pool_.size();
  for (size_t i = 0; i < pool_.size(); ++i) {
    const HostBuffer& b = pool_[i];
    if (b.in_use || b.device != &device || b.bytes < bytes) continue;
    if (best == pool_.size() || b.bytes < pool_[best].bytes) best = i;
  }
  if (best == pool_.size()) {
    HostBuffer b;
    b.ptr = device.host_pinned_allocate(bytes);
    b.bytes = bytes;
    b.device = &device;
    pool_.push_back(b);
    pinned_bytes_ += static_cast<int64_t>(bytes);
  }
  pool_[best].in_use = true;
  return best;
}

int64_t ActivationOffload::stash(const Tensor& t) {
  if (!wants(t)) fail("activation offload: {} is not a contiguous tensor of at least {} bytes", t.describe(), min_bytes_);
  Device& device = t.device();
  Ticket k;
  k.shape = t.shape();
  k.dtype = t.dtype();
  k.device = &device;
  k.bytes = t.nbytes();
  k.host = acquire(device, k.bytes);
  k.to_host = device.copy_to_host_fenced(pool_[k.host].ptr, t.raw_data(), k.bytes);
  in_flight_.push_back({t, k.to_host});
  stashed_bytes_ += static_cast<int64_t>(k.bytes);
  tickets_.push_back(std::move(k));
  return static_cast<int64_t>(tickets_.size()) - 1;
}

void ActivationOffload::retire_in_flight() {
  for (InFlight& f : in_flight_) {
    // Later kernels (and the allocator's next user of this memory) run after the copy has read it.
    f.tensor.device().compute_wait(f.fence);
    f.tensor = Tensor();
  }
  in_flight_.clear();
}

void ActivationOffload::prefetch(int64_t id) {
  if (id < 0 || id >= static_cast<int64_t>(tickets_.size())) fail("activation offload: no ticket {}", id);
  Ticket& k = tickets_[static_cast<size_t>(id)];
  if (k.taken) fail("activation offload: ticket {} was already taken back", id);
  if (k.back.defined()) return;
  k.back = Tensor::empty(k.shape, k.dtype, *k.device);
  k.to_device = k.device->copy_from_host_fenced(k.back.raw_data(), pool_[k.host].ptr, k.bytes);
}

Tensor ActivationOffload::take(int64_t id) {
  prefetch(id);
  Ticket& k = tickets_[static_cast<size_t>(id)];
  k.device->compute_wait(k.to_device);
  Tensor out = std::move(k.back);
  release_ticket(k);
  k.taken = true;
  return out;
}

ActivationOffload::Ticket& ActivationOffload::storage_ticket(int64_t id) {
  if (id < 0 || id >= static_cast<int64_t>(tickets_.size()) || !tickets_[static_cast<size_t>(id)].whole_storage)
    fail("activation offload: no storage ticket {}", id);
  return tickets_[static_cast<size_t>(id)];
}

namespace {
constexpr const char* kOffloadedWhy =
    "it is an activation that activation offload (train.offload_kept_blocks, or train.keep_attention with "
    "train.offload_activations) moved to host memory until backward reaches its block, read by something other "
    "than a recorded op (only those get it back first)";
}  // namespace

int64_t ActivationOffload::stash_storage(std::shared_ptr<Storage> storage) {
  if (!storage || storage->released() || storage->borrowed())
    fail("activation offload: a storage to stash must be owned and hold its memory");
  Device& device = storage->device();
  Ticket k;
  k.device = &device;
  k.bytes = storage->bytes();
  k.host = acquire(device, k.bytes);
  k.to_host = device.copy_to_host_fenced(pool_[k.host].ptr, storage->data(), k.bytes);
  k.storage = std::move(storage);
  k.whole_storage = true;
  stashed_bytes_ += static_cast<int64_t>(k.bytes);
  stashed_storage_bytes_ += static_cast<int64_t>(k.bytes);
  tickets_.push_back(std::move(k));
  return static_cast<int64_t>(tickets_.size()) - 1;
}

bool ActivationOffload::storage_copied(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(tickets_.size())) fail("activation offload: no storage ticket {}", id);
  const Ticket& k = tickets_[static_cast<size_t>(id)];
  return k.to_host == nullptr || k.device->fence_done(k.to_host);
}

void ActivationOffload::release_storage(int64_t id) {
  Ticket& k = storage_ticket(id);
  if (k.taken || k.released || k.to_device != nullptr) return;
  // Later kernels, and the allocator's next user of this memory, run after the copy has read it.
  k.device->compute_wait(k.to_host);
  k.storage->release_memory(kOffloadedWhy);
  k.released = true;
}

void ActivationOffload::prefetch_storage(int64_t id) {
  Ticket& k = storage_ticket(id);
  if (k.taken || !k.released || k.to_device != nullptr) return;
  k.storage->acquire_memory();
  k.to_device = k.device->copy_from_host_fenced(k.storage->data(), pool_[k.host].ptr, k.bytes);
}

void ActivationOffload::restore_storage(int64_t id) {
  Ticket& k = storage_ticket(id);
  if (k.taken) return;
  prefetch_storage(id);
  // Not released (the copy out may still run): the values never left; later work must not overwrite them
  // before the copy has read them.
  k.device->compute_wait(k.to_device != nullptr ? k.to_device : k.to_host);
  release_ticket(k);  // fences and host buffer
  k.taken = true;
  // The storage is its holders' again: its memory goes when the last of them lets go (a node after its
  // backward), not when the tickets are dropped at the end of backward.
  k.storage.reset();
}

void ActivationOffload::release_ticket(Ticket& k) {
  if (k.to_device) k.device->fence_release(k.to_device);
  if (k.to_host) k.device->fence_release(k.to_host);
  k.to_device = k.to_host = nullptr;
  // The host buffer may be reused now: a later copy into it runs on the same copy stream, after this one.
  pool_[k.host].in_use = false;
  k.back = Tensor();
}

void ActivationOffload::reset() {
  retire_in_flight();
  for (size_t i = 0; i < tickets_.size(); ++i) {
    Ticket& k = tickets_[i];
    if (k.taken) continue;
    if (k.storage && k.released && k.storage.use_count() > 1) {  // still held elsewhere: its values back
      restore_storage(static_cast<int64_t>(i));
      continue;
    }
    if (k.back.defined()) k.device->compute_wait(k.to_device);  // the buffer being filled is dropped next
    if (k.storage) k.device->compute_wait(k.to_device != nullptr ? k.to_device : k.to_host);
    release_ticket(k);
  }
  tickets_.clear();
  stashed_bytes_ = 0;
  stashed_storage_bytes_ = 0;
}

}  // namespace engine::rt
