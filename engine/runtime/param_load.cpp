#include "engine/runtime/param_load.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "engine/core/error.hpp"
#include "engine/core/name_list.hpp"

namespace engine::rt {

LoadReport load_params(ParamStore& store, const std::vector<std::string>& source_names,
                       const std::function<bool(const std::string&, Tensor&)>& read,
                       const LoadOptions& options) {
  LoadReport report;
  std::set<std::string> in_source(source_names.begin(), source_names.end());
  std::vector<Param*> expected;
  for (size_t i = 0; i < store.size(); ++i) {
    Param* p = &store.at(i);
    const bool skip = p->tied() || (p->decl.flags & ENG_PARAM_NOT_SAVED) || p->decl.role == ENG_ROLE_ADAPTER;
    if (skip) continue;
    expected.push_back(p);
    if (!in_source.count(p->name())) report.missing.push_back(p->name());
  }
  // Names of a quantized parameter's pre-quantized storage: "<param>.<suffix>" that its quantizer owns.
  std::map<Param*, std::vector<std::string>> owned;
  for (const std::string& name : source_names) {
    if (store.find(name) != nullptr) continue;
    Param* owner = nullptr;
    if (options.read_stored) {
      for (size_t dot = name.rfind('.'); dot != std::string::npos && dot > 0; dot = name.rfind('.', dot - 1)) {
        Param* p = store.find(name.substr(0, dot));
        if (p != nullptr && !p->tied() && p->quantizer != nullptr && p->quantizer->owns(*p, name)) {
          owner = p;
          break;
        }
        if (dot == 0) break;
      }
    }
    if (owner != nullptr) {
      owned[owner].push_back(name);
    } else {
      report.unexpected.push_back(name);
    }
  }
  const bool bad_missing = !report.missing.empty() && !options.allow_missing;
  const bool bad_unexpected = !report.unexpected.empty() && !options.allow_unexpected;
  if (bad_missing || bad_unexpected) {
    std::string msg = "the checkpoint does not match the model's parameters:";
    if (bad_missing) msg += fmt::format(" missing {} ({})", report.missing.size(), name_list(report.missing));
    if (bad_missing && bad_unexpected) msg += ";";
    if (bad_unexpected)
      msg += fmt::format(" unexpected {} ({})", report.unexpected.size(), name_list(report.unexpected));
    const bool prequantized = std::any_of(report.unexpected.begin(), report.unexpected.end(), [](const std::string& n) {
      return n.ends_with(".absmax") || n.find(".quant_state.") != std::string::npos;
    });
    if (bad_unexpected && prequantized) {
      msg += ". The checkpoint holds pre-quantized weights (bitsandbytes 4-bit: .absmax, .quant_state.*): load "
             "it with a quantizer that reads them, [quantizer] plugin = \"nf4\" in the recipe.";
    } else {
      msg += ". Check that the model plugin matches the checkpoint's architecture (config.json).";
    }
    fail_with(ENG_ERR_NOT_FOUND, "{}", msg);
  }
  for (Param* p : expected) {
    if (!in_source.count(p->name())) continue;
    if (p->held_elsewhere() && !p->value.defined()) {  // another pipeline stage's: never read here
      report.loaded.push_back(p->name());
      continue;
    }
    if (auto it = owned.find(p); it != owned.end()) {  // pre-quantized: the quantizer reads its own tensors
      StateDict st;
      st.put(p->name(), options.read_stored(p->name()));
      for (const std::string& name : it->second) st.put(name, options.read_stored(name));
      if (p->quant_state != nullptr) {
        p->quantizer->free_state(p->quant_state);
        p->quant_state = nullptr;
      }
      p->quant_state = p->quantizer->load_state(*p, st, p->name());
      for (const std::string& name : it->second) report.loaded.push_back(name);
    } else if (p->quantizer != nullptr) {
      if (p->quant_state != nullptr) {
        p->quantizer->free_state(p->quant_state);
        p->quant_state = nullptr;
      }
      Tensor full = Tensor::empty(p->shape(), p->decl.dtype, store.device_of(*p));
      if (!read(p->name(), full))
        fail_with(ENG_ERR_IO, "could not read parameter '{}' from the checkpoint", p->name());
      p->quant_state = p->quantizer->quantize(*p, full);
    } else {
      if (!p->value.defined()) p->value = Tensor::empty(p->shape(), store.storage_dtype(*p), store.device_of(*p));
      if (!read(p->name(), p->value))
        fail_with(ENG_ERR_IO, "could not read parameter '{}' from the checkpoint", p->name());
    }
    p->loaded = true;
    report.loaded.push_back(p->name());
  }
  return report;
}

}  // namespace engine::rt
