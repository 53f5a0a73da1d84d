// ParamStore: every named parameter of the run (model weights under their Hugging Face names, PEFT adapters).
//
// Per parameter it keeps the declaration (name, role, flags, shape, storage dtype, init), the block it was
// declared in, and its storage:
//  - value: an fp32 master for trainable parameters, the declared dtype (e.g. bf16) for frozen ones. Values
//    are materialised lazily: load_params() (param_load.hpp) reads straight into them, anything not loaded is
//    initialised on first use as its declaration asks (param_init.hpp).
//  - grad: an fp32 GradSink allocated at the first backward that reaches the parameter; it persists across
//    backward passes (gradient accumulation) until zero_grads()/clear_grads().
//  - tied parameters (ENG_PARAM_TIED, tied_to) share the root's value and grad: every operation on a tied
//    parameter acts on its root.
//  - quantizer state: when the run's quantizer takes a parameter, its dense value is dropped and the
//    quantizer's opaque state is kept instead (freed through the quantizer when the store dies: the quantizer
//    must outlive it).
//  - a PEFT cookie: set by peft_attach; the linear seam routes linear(x, param) through the run's PEFT with
//  it.
//  - placement (the parallel strategy's, zero3): a root placed as a shard keeps only its `local` flat slice
//    (rank r: elements [r*s, (r+1)*s) of the flattened value, zero past its end; s * world >= numel) and, for
//    trainable ones, the local slice of the gradient summed over ranks. Its full value lives in one padded
//    buffer (world * s elements) whose memory is released between uses: gather() all-gathers the shards
//    into it (value() does so on demand), release() gives the memory back while every Tensor of it stays
//    valid (the tape's saved references: the next gather refills the same storage, FSDP's trick), and
//    reduce_grad() reduce-scatters the accumulated full gradient into the local gradient and frees it.
//    Placement is requested (set_local) when the strategy is set up, before the weights load, and applied
//    (apply_placement) after everything is loaded and initialised.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/abi/engine.h"
#include "engine/runtime/autograd.hpp"
#include "engine/runtime/communicator.hpp"
#include "engine/runtime/quantizer.hpp"
#include "engine/runtime/tensor.hpp"

namespace engine::rt {

struct ParamDecl {
  std::string name;
  Dims shape;
  DType dtype = ENG_F32;  // storage dtype of the frozen value
  eng_param_role role = ENG_ROLE_OTHER;
  uint32_t flags = 0;  // ENG_PARAM_*
  eng_init_kind init = ENG_INIT_ZEROS;
  double init_arg = 0.0;
  std::string tied_to;  // with ENG_PARAM_TIED: the root parameter's name
};

struct Param;

// One flat buffer sharded evenly over the ranks: zero3 places each parameter in one of its own, fsdp a block's
// parameters of one dtype together (their flattened values back to back). Rank r keeps elements
// [r*shard, (r+1)*shard) of the buffer, zero past its end (shard * world >= numel).
struct FlatShards {
  std::vector<Param*> members;   // roots, in buffer order
  std::vector<int64_t> offsets;  // where each member starts
  int64_t numel = 0;             // the members' elements together
  int64_t shard = 0;             // elements per rank
  DType dtype = ENG_F32;         // the storage dtype of every member
  bool applied = false;          // local holds the shard (apply_placement ran)
  bool gathered = false;         // full's memory is held and filled
  Tensor local;                  // (shard) storage dtype: this rank's slice
  Tensor local_grad;             // (shard) f32: this rank's slice of the gradient summed over ranks; undefined: none
  bool local_grad_zero_pending = false;
  Tensor full;  // (world * shard) flat storage dtype; every member's value is a view of its own elements
};

// A root kept as this rank's slice of `world` equal slices along dim 0 or 1 (tensor parallelism, tp). value
// is the local slice (a plain tensor of the local shape) except while gathered, when it is the whole tensor
// (a save, a resume: ParamStore::gather/release swap them).
struct Split {
  int dim = -1;          // -1: not split
  bool applied = false;  // apply_placement cut the slice
  bool gathered = false; // value holds the whole tensor; local the slice
  Tensor local;          // the slice while gathered (undefined otherwise: value is the slice)
};

// A root kept by one rank of the split communicator alone (pipeline parallelism: the stage whose blocks use
// it). On the others it is never loaded, initialised or allocated: value is undefined except between a
// gather (a broadcast from the holder) and the next release.
struct Held {
  int holder = -1;        // -1: not placed so
  bool remote = false;    // this rank is not the holder
  bool gathered = false;  // remote: value holds the holder's copy
};

// Where a root parameter's storage lives (see the file comment).
struct Placement {
  std::shared_ptr<FlatShards> flat;  // null: whole on every rank
  size_t member = 0;                 // this root's index in flat->members
  Split split;                       // tensor parallelism (exclusive with flat)
  Held held;                         // pipeline parallelism (exclusive with both)
  Device* device = nullptr;          // layer placement: the device of value and grad (null: the store's)
  bool applied() const { return flat != nullptr && flat->applied; }
};

struct Param {
  ParamDecl decl;
  int block = -1;      // the decoder block it was declared in (-1 outside blocks)
  uint32_t flags = 0;  // current flags (TRAINABLE may change; QUANTIZED set by the store)
  Param* root = this;  // the parameter whose storage it uses (itself unless tied)
  // Storage (meaningful on roots only).
  Tensor value;         // undefined until materialised, and for quantized parameters
  bool loaded = false;  // value came from load() rather than init
  std::shared_ptr<GradSink> grad;
  Quantizer* quantizer = nullptr;  // non-null: quant_state holds the weight
  void* quant_state = nullptr;
  void* peft_cookie = nullptr;  // per parameter (not shared by ties)
  Placement placement;          // roots only

  bool sharded() const { return root->placement.flat != nullptr; }
  // Split by tensor parallelism (requested: applies once apply_placement ran).
  bool split() const { return root->placement.split.dim >= 0; }
  // Held by one pipeline stage (set_holder), and whether that is another rank.
  bool held_by_one() const { return root->placement.held.holder >= 0; }
  bool held_elsewhere() const { return root->placement.held.remote; }
  // The shape ops see: the local slice's once a split is applied (and not gathered), else the declared one.
  Dims compute_shape() const {
    const Split& s = root->placement.split;
    return s.applied && !s.gathered ? root->value.shape() : decl.shape;
  }

  const std::string& name() const { return decl.name; }
  const Dims& shape() const { return decl.shape; }
  bool trainable() const { return (root->flags & ENG_PARAM_TRAINABLE) != 0; }
  bool quantized() const { return root->quantizer != nullptr; }
  bool tied() const { return root != this; }
};

class ParamStore {
 public:
  ParamStore(Device& device, uint64_t seed);
  ~ParamStore();
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  // Adds a parameter; throws on a duplicate name, a bad shape or dtype, or an unknown/mismatched tie target.
  Param& declare(const ParamDecl& decl, int block = -1);

  size_t size() const { return params_.size(); }
  Param& at(size_t i) const { return *params_.at(i); }
  Param* find(const std::string& name) const;  // nullptr when absent
  Param& get(const std::string& name) const;   // throws ENG_ERR_NOT_FOUND with close names

  // The stored value of the root (materialised on first call). Throws for quantized parameters.
  Tensor& value(Param& p);
  // The value as an input of an op: a tape leaf feeding p's grad when trainable (re-resolved through value()
  // when a checkpointed block is replayed), else the plain value.
  Tensor use(Param& p, Tape& tape);
  // The accumulated gradient (fp32), undefined when none has arrived.
  Tensor grad(const Param& p) const;
  GradSink& grad_sink(Param& p);

  // Switches TRAINABLE: the value becomes an fp32 master (trainable) or goes back to the declared dtype.
  void set_trainable(Param& p, bool trainable);
  void zero_grads();   // keeps the buffers
  void clear_grads();  // frees them

  // Hands every parameter the quantizer takes to it (quantizing already materialised values now, the others
  // as they are loaded or initialised). Trainable parameters are refused with an error naming them.
  void assign_quantizer(Quantizer& q);

  // Teardown: frees every state held by `q` (through q) and forgets q. The affected parameters have no value
  // afterwards; call this only when the run ends (PluginQuantizer's destructor does).
  void release_quantizer(Quantizer& q) noexcept;

  // Materialises (initialises, quantizes) every parameter that is not yet.
  void materialize_all();

  // ---- placement (zero3) ----
  // The communicator gathers and scatters use (the session's; nullptr: a single process).
  void set_communicator(Communicator* comm) { comm_ = comm; }
  // The ranks a split is cut over (tensor parallelism in a mesh: the model group; nullptr: the communicator's).
  void set_split_communicator(Communicator* comm) { split_comm_ = comm; }
  // Requests that root `p` be kept as a shard of `shard` elements per rank (0: whole). Quantized parameters
  // are refused. Takes effect at apply_placement().
  void set_local(Param& p, int64_t shard);
  // Requests that the roots `members` share one flat buffer sharded evenly over the ranks (fsdp): the same
  // storage dtype and trainability, none tied, quantized or placed. gather/release/reduce_grad of any member
  // then act on all of them.
  void set_local_flat(const std::vector<Param*>& members);
  // Requests that root p be kept as this rank's slice of `world` equal slices along dim 0 or 1 (tp); shape[dim]
  // must divide by the world size. Quantized, tied or placed parameters are refused. Takes effect at
  // apply_placement(); gather() then makes value the whole tensor (an all-gather), release() the slice again.
  void set_split(Param& p, int dim);
  bool any_split() const;
  // Requests that only rank `holder` of the split communicator (the model group) keeps root p (pipeline
  // parallelism); immediate: the others never materialise it. Tied, quantized or placed parameters are refused.
  // gather() then broadcasts it from the holder (collective over that group), release() frees it again.
  void set_holder(Param& p, int holder);
  bool any_held() const;
  // The elements [begin, end) of root p's flattened value that this rank's shard holds (zero3: the shard,
  // possibly past numel into the padding; fsdp: the part of the member inside the shard, possibly empty).
  std::pair<int64_t, int64_t> local_range(const Param& p) const;
  // Every requested placement takes effect: the shard is cut out of the loaded/initialised value and the
  // full buffer's memory is released.
  void apply_placement();
  bool any_sharded() const;
  // Collective (every rank in the same order): the full value of a sharded root becomes valid.
  void gather(Param& p);
  // The full value's memory goes back to the device (views stay valid; the next gather refills them).
  void release(Param& p);
  // Collective: the accumulated full gradient, summed over ranks, is added into the local gradient; the full
  // gradient is freed. Ranks without a gradient contribute zeros.
  void reduce_grad(Param& p);
  // While pinned, release() keeps gathered values (rank 0 alone evaluates or saves without collectives).
  void set_pinned(bool pinned) { pinned_ = pinned; }
  bool pinned() const { return pinned_; }
  // After the full value was written (a checkpoint loaded into it): this rank's shard is cut out of it again.
  void refresh_local(Param& p);
  // The local shard (flat) and local gradient (undefined when none) of a sharded root; whole value/grad else.
  Tensor local(Param& p);
  Tensor local_grad(const Param& p) const;
  // Bytes of parameter storage this rank holds at rest (local shards, whole values, quantized states
  // excluded).
  int64_t local_param_bytes() const;

  // Elements of all (or only trainable) root parameters.
  int64_t numel(bool trainable_only = false) const;
  uint64_t seed() const { return seed_; }
  Device& device() const { return *device_; }
  // The device a root's value and gradient live on: its own (layer placement, set_device) or the store's.
  Device& device_of(const Param& p) const {
    return p.root->placement.device != nullptr ? *p.root->placement.device : *device_;
  }
  // Layer placement: root p lives on `device` (before the weights load; a value already there moves).
  // Quantized, tied, sharded, split or held parameters are refused.
  void set_device(Param& p, Device& device);
  // The dtype a root's dense value is stored in: fp32 while trainable, else the declared dtype.
  DType storage_dtype(const Param& root) const;

 private:
  void materialize(Param& root);
  void gather_split(Param& root);
  int world() const { return comm_ != nullptr ? comm_->world_size() : 1; }
  Communicator* split_comm() const { return split_comm_ != nullptr ? split_comm_ : comm_; }
  int split_world() const { return split_comm() != nullptr ? split_comm()->world_size() : 1; }
  int split_rank() const { return split_comm() != nullptr ? split_comm()->rank() : 0; }
  int rank() const { return comm_ != nullptr ? comm_->rank() : 0; }

  Device* device_;
  Communicator* comm_ = nullptr;
  Communicator* split_comm_ = nullptr;
  bool pinned_ = false;
  uint64_t seed_;
  std::vector<std::unique_ptr<Param>> params_;
  std::unordered_map<std::string, Param*> by_name_;
};

}  // namespace engine::rt
