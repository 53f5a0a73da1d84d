// Loading parameter values by name (a checkpoint, an adapter): which parameters a source must provide,
// the refusal that lists the missing and unexpected names, and reading into each parameter's storage (for a
// quantized parameter: reading the full-precision value and handing it to its quantizer).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/runtime/param_store.hpp"

namespace engine::rt {

struct LoadOptions {
  bool allow_missing = false;     // parameters the source lacks keep their init
  bool allow_unexpected = false;  // source names that match no parameter are ignored
  // A source tensor as stored (its own shape and dtype, on the store's device), for pre-quantized weights: a
  // quantized parameter whose quantizer owns source names ("<param>.absmax", ...) gets them, and the tensor of
  // its own name, through Quantizer::load_state instead of a dense read and quantize. Unset: no source is
  // treated as pre-quantized (the owned names are then reported as unexpected).
  std::function<Tensor(const std::string& name)> read_stored = nullptr;
};

struct LoadReport {
  std::vector<std::string> loaded, missing, unexpected;
};

// Reads values by name: source_names are the tensors the source holds, read(name, dst) fills dst (declared
// shape; dtype = the storage dtype; the reader converts) and returns false when it cannot. Expected are the
// untied parameters without ENG_PARAM_NOT_SAVED and with a role other than ENG_ROLE_ADAPTER. Source names that
// match no parameter but that the quantizer of a parameter P owns (asked for names "P.<suffix>") are that
// parameter's pre-quantized storage (see LoadOptions::read_stored). Throws, before reading anything, with the
// lists of missing and unexpected names unless the options allow them.
LoadReport load_params(ParamStore& store, const std::vector<std::string>& source_names,
                       const std::function<bool(const std::string& name, Tensor& dst)>& read,
                       const LoadOptions& options = {});

}  // namespace engine::rt
