// Writing a model's weights in Hugging Face layout. Both writers take every saved parameter of the store
// (roots only, so a tied lm_head is not written twice; no adapters, nothing marked NOT_SAVED) under its
// Hugging Face name, converted to `dtype`, with the {"format": "pt"} metadata transformers checks for.
//
//  - write_model_safetensors: the current values, into one model.safetensors (full-weight exports, a preset
//    model created by `engine run`).
//  - write_initial_model: the declared initial values, generated range by range straight into the file and
//    never held whole (`engine init-model`, up to 70B shapes on a machine with a few GB of memory). The bytes
//    are those write_model_safetensors writes for a store whose parameters were initialised by
//    ParamStore::materialize (rt::initial_values, converted to the parameter's storage dtype, then to
//    `dtype`), so a model written either way, with the same seed, is the same model.
//    Shards follow transformers' save_pretrained: parameters in declaration (state dict) order are cut
//    greedily into shards of at most max_shard_bytes of tensor data (a larger tensor gets a shard of its
//    own); one shard is model.safetensors, several are model-00001-of-0000N.safetensors with
//    model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map"}, sorted keys, indent 2).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/abi/engine.h"
#include "engine/runtime/param_store.hpp"

namespace engine::session {

// Materialises parameters that are not yet (their declared initialisation) and writes the file atomically.
void write_model_safetensors(rt::ParamStore& store, const std::filesystem::path& file, eng_dtype dtype);

struct InitialModelOptions {
  eng_dtype dtype = ENG_BF16;                   // f32, bf16 or f16
  uint64_t max_shard_bytes = 5'000'000'000ull;  // transformers' default max_shard_size "5GB"
  int threads = 0;                              // generating threads; <= 0: every core
};

struct WrittenModel {
  std::vector<std::string> files;  // safetensors files written, in shard order (no index)
  uint64_t total_bytes = 0;        // tensor data over all shards (the index's total_size)
  size_t tensors = 0;
};

// Writes the declared initial values of store's parameters into `dir` (an existing directory; existing files
// of the same names are replaced, atomically each). Parameters must not hold values yet (none loaded,
// materialised or quantized): engine::Error naming the first that does. Memory: a few chunks of 4M elements.
WrittenModel write_initial_model(const rt::ParamStore& store, const std::filesystem::path& dir,
                                 const InitialModelOptions& options = {});

}  // namespace engine::session
