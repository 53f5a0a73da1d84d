#include "engine/host/param_info.hpp"

namespace engine::host {

eng_param_info param_info(const rt::Param& p) {
  eng_param_info info{};
  info.struct_size = sizeof(eng_param_info);
  info.name = p.decl.name.c_str();
  info.ndim = p.decl.shape.ndim;
  for (int i = 0; i < p.decl.shape.ndim; ++i) info.shape[i] = p.decl.shape[i];
  info.dtype = p.decl.dtype;
  info.role = p.decl.role;
  info.flags = (p.flags & ~static_cast<uint32_t>(ENG_PARAM_TRAINABLE | ENG_PARAM_QUANTIZED | ENG_PARAM_HELD)) |
               (p.root->flags & (ENG_PARAM_TRAINABLE | ENG_PARAM_QUANTIZED)) |
               (p.held_by_one() ? ENG_PARAM_HELD : 0u);
  info.block = p.block;
  return info;
}

}  // namespace engine::host
