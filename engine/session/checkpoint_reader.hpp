// Streaming a Hugging Face checkpoint into the parameter store: tensor by tensor, straight from the mapped
// safetensors file into the parameter's storage, converting the dtype on the way (bf16/f16/f32/f64 -> the
// parameter's storage dtype: fp32 masters for trainable parameters, the declared dtype for frozen ones).
// Conversion goes through one bounded host buffer (kChunkElements), so a 7B model is never held twice: the
// only full copy is the parameter store's, and mapped pages of the file can be dropped by the kernel.
#pragma once

#include <string>

#include "engine/io/safetensors.hpp"
#include "engine/io/safetensors_checkpoint.hpp"
#include "engine/runtime/param_load.hpp"
#include "engine/runtime/param_store.hpp"
#include "engine/runtime/tensor.hpp"

namespace engine::session {

// Elements converted per step when the destination is not contiguous CPU memory of the source's dtype.
inline constexpr int64_t kChunkElements = int64_t{1} << 20;

// Copies `src` into `dst` (same shape; any float dtype on either side). engine::Error naming `where` and the
// tensor on a shape mismatch or a dtype that is not a float (ints are copied only into the same dtype).
void read_tensor_into(const io::SafetensorsTensor& src, rt::Tensor& dst, const std::string& where);

struct CheckpointLoadOptions {
  // The model ties its output projection to the embedding: a checkpoint's lm_head.weight (some tied
  // checkpoints still store it) is skipped rather than reported as unexpected, as transformers does.
  bool tied_lm_head = false;
  rt::LoadOptions store;  // allow_missing / allow_unexpected
};

// Loads every declared parameter from the checkpoint by name. engine::Error (from rt::load_params) listing
// the missing and unexpected names before anything is read, unless the options allow them.
rt::LoadReport load_checkpoint(rt::ParamStore& store, const io::SafetensorsCheckpoint& checkpoint,
                               const CheckpointLoadOptions& options = {});

}  // namespace engine::session
