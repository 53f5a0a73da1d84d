#include "engine/runtime/param_load.hpp"

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
  for (const std::string& name : source_names)
    if (store.find(name) == nullptr) report.unexpected.push_back(name);
  const bool bad_missing = !report.missing.empty() && !options.allow_missing;
  const bool bad_unexpected = !report.unexpected.empty() && !options.allow_unexpected;
  if (bad_missing || bad_unexpected) {
    std::string msg = "the checkpoint does not match the model's parameters:";
    if (bad_missing) msg += fmt::format(" missing {} ({})", report.missing.size(), name_list(report.missing));
    if (bad_missing && bad_unexpected) msg += ";";
    if (bad_unexpected)
      msg += fmt::format(" unexpected {} ({})", report.unexpected.size(), name_list(report.unexpected));
    msg += ". Check that the model plugin matches the checkpoint's architecture (config.json).";
    fail_with(ENG_ERR_NOT_FOUND, "{}", msg);
  }
  for (Param* p : expected) {
    if (!in_source.count(p->name())) continue;
    if (p->quantizer != nullptr) {
      if (p->quant_state != nullptr) {
        p->quantizer->free_state(p->quant_state);
        p->quant_state = nullptr;
      }
      Tensor full = Tensor::empty(p->shape(), p->decl.dtype, store.device());
      if (!read(p->name(), full))
        fail_with(ENG_ERR_IO, "could not read parameter '{}' from the checkpoint", p->name());
      p->quant_state = p->quantizer->quantize(*p, full);
    } else {
      if (!p->value.defined()) p->value = Tensor::empty(p->shape(), store.storage_dtype(*p), store.device());
      if (!read(p->name(), p->value))
        fail_with(ENG_ERR_IO, "could not read parameter '{}' from the checkpoint", p->name());
    }
    p->loaded = true;
    report.loaded.push_back(p->name());
  }
  return report;
}

}  // namespace engine::rt
