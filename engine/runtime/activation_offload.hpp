// ActivationOffload: the inputs that checkpointed blocks keep for their replay, moved out of device memory
// into pinned host memory while the forward goes on, and brought back ahead of each replay in backward
// (train.offload_activations; Unsloth's offloaded gradient checkpointing).
//
// Forward: at the end of a checkpointed block the tape hands over the block's large kept inputs (stash). Each
// starts a device-to-host copy behind the compute stream's work and stays alive on the device until the end
// of the next block (retire_in_flight): by then the copy is long done, the compute stream is told to wait for
// it (so no later kernel can reuse the memory before the copy has read it), and the device buffer is dropped.
// Backward: before the replay of block i the tape takes its inputs back (take: a new device tensor, filled by
// a host-to-device copy the compute stream waits for) and prefetches the inputs of the next checkpointed
// block to be replayed, so that copy overlaps block i's replay and backward. The values are bit for bit the
// ones stashed: gradients with and without offload are identical.
//
// Kept blocks (Tape::set_offload_kept_blocks): the same, a storage at a time, for the activations a block that
// does not recompute saves for its backward. stash_storage starts the copy out; release_storage gives the
// storage's device memory back (every view stays valid, rt::Storage::release_memory) once the copy is done, or
// earlier with the compute stream told to wait for it; prefetch_storage / restore_storage refill the same storage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/runtime/tensor.hpp"

namespace engine::rt {

class ActivationOffload {
 public:
  // Tensors smaller than `min_bytes` stay on the device (position ids, masks: not worth a copy).
  explicit ActivationOffload(size_t min_bytes = size_t(1) << 20) : min_bytes_(min_bytes) {}
  ~ActivationOffload();
  ActivationOffload(const ActivationOffload&) = delete;
  ActivationOffload& operator=(const ActivationOffload&) = delete;

  size_t min_bytes() const { return min_bytes_; }
  // Whether `t` is worth offloading: defined, contiguous, at least min_bytes.
  bool wants(const Tensor& t) const;
  // Whether stash_storage can take `st` and it is worth it: owned, holding its memory, at least min_bytes.
  bool wants_storage(const Storage* st) const;
  // Starts the copy of `t` to host memory and returns its ticket. `t` stays referenced until the next
  // retire_in_flight().
  int64_t stash(const Tensor& t);
  // The copies started before this call are waited for by the compute stream and their device tensors are
  // dropped (the memory returns to the allocator).
  void retire_in_flight();
  // Starts bringing ticket `id` back to the device (no-op when already started).
  void prefetch(int64_t id);
  // The device tensor of ticket `id` (prefetched now if it was not), ordered before the compute stream's
  // later work; its host buffer returns to the pool.
  Tensor take(int64_t id);
  // Storage tickets (kept blocks). stash_storage starts the copy of the whole storage (owned, not released) to
  // host memory; the storage keeps its device memory until release_storage.
  int64_t stash_storage(std::shared_ptr<Storage> storage);
  // Whether the copy out of ticket `id` has finished (never blocks).
  bool storage_copied(int64_t id) const;
  // The storage's device memory goes back to the allocator; the compute stream's later work waits for the copy
  // out first (nothing waits when it is done). No-op when released, prefetched or restored already.
  void release_storage(int64_t id);
  // Starts refilling a released storage from host memory (no-op otherwise).
  void prefetch_storage(int64_t id);
  // The storage holds its values again for the compute stream's later work; the host buffer returns to the pool.
  void restore_storage(int64_t id);

  // Drops every ticket (end of backward, or a tape cleared without one); pinned buffers stay pooled. A storage
  // still released that somebody else holds gets its values back first.
  void reset();

  // Bytes copied to the host since the last reset (of them, whole storages of kept blocks), and the pinned
  // bytes the pool holds.
  int64_t stashed_bytes() const { return stashed_bytes_; }
  int64_t stashed_storage_bytes() const { return stashed_storage_bytes_; }
  int64_t pinned_bytes() const { return pinned_bytes_; }

 private:
  struct HostBuffer {
    void* ptr = nullptr;
    size_t bytes = 0;
    Device* device = nullptr;
    bool in_use = false;
  };
  struct Ticket {
    Dims shape;
    DType dtype = ENG_F32;
    Device* device = nullptr;
    size_t bytes = 0;
    size_t host = 0;           // index into pool_
    void* to_host = nullptr;   // fence of the copy out
    Tensor back;               // the device tensor being filled (after prefetch)
    void* to_device = nullptr; // fence of the copy back
    bool taken = false;
    std::shared_ptr<Storage> storage;  // storage tickets: the storage itself (refilled in place), until taken
    bool whole_storage = false;        // a storage ticket
    bool released = false;             // its device memory was given back
  };
  struct InFlight {
    Tensor tensor;
    void* fence = nullptr;
  };

  size_t acquire(Device& device, size_t bytes);
  void release_ticket(Ticket& t);
  Ticket& storage_ticket(int64_t id);

  size_t min_bytes_;
  std::vector<HostBuffer> pool_;
  std::vector<Ticket> tickets_;
  std::vector<InFlight> in_flight_;
  int64_t stashed_bytes_ = 0;
  int64_t stashed_storage_bytes_ = 0;
  int64_t pinned_bytes_ = 0;
};

}  // namespace engine::rt
