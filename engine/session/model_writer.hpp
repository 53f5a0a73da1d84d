// Writing a model's weights in Hugging Face layout: every saved parameter of the store (roots only, so a tied
// lm_head is not written twice; no adapters, nothing marked NOT_SAVED) into one model.safetensors, under its
// Hugging Face name, converted to `dtype`, with the {"format": "pt"} metadata transformers checks for.
// Used by `engine init-model` and by full-weight exports.
#pragma once

#include <filesystem>

#include "engine/abi/engine.h"
#include "engine/runtime/param_store.hpp"

namespace engine::session {

// Materialises parameters that are not yet (their declared initialisation) and writes the file atomically.
void write_model_safetensors(rt::ParamStore& store, const std::filesystem::path& file, eng_dtype dtype);

}  // namespace engine::session
