#include "engine/runtime/quantizer.hpp"

#include "engine/core/error.hpp"
#include "engine/runtime/param_store.hpp"

namespace engine::rt {

void* Quantizer::load_state(Param& param, StateDict&, const std::string&) {
  fail_with(ENG_ERR_UNSUPPORTED, "the {} quantizer cannot load a pre-quantized weight ({})", name(), param.name());
}

void Quantizer::save_state(void*, StateDict&, const std::string& prefix) {
  fail_with(ENG_ERR_UNSUPPORTED, "the {} quantizer cannot save its quantized weights ({})", name(), prefix);
}

}  // namespace engine::rt
