// Writing model weights (see model_writer.hpp).
#include "engine/session/model_writer.hpp"

#include <cstddef>
#include <span>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/io/safetensors_writer.hpp"

namespace engine::session {

void write_model_safetensors(rt::ParamStore& store, const std::filesystem::path& file, eng_dtype dtype) {
  if (dtype != ENG_F32 && dtype != ENG_BF16 && dtype != ENG_F16)
    fail("model weights are written as float32, bfloat16 or float16, not {}", rt::dtype_name(dtype));
  io::SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  for (size_t i = 0; i < store.size(); ++i) {
    rt::Param& p = store.at(i);
    if (p.tied() || (p.decl.flags & ENG_PARAM_NOT_SAVED) || p.decl.role == ENG_ROLE_ADAPTER) continue;
    rt::Tensor value = store.value(p);
    if (value.dtype() != dtype) value = value.to(dtype);
    std::vector<std::byte> bytes(value.nbytes());
    value.contiguous().copy_to_host(bytes.data(), bytes.size());
    writer.add(p.name(), dtype, p.shape().vec(), std::span<const std::byte>(bytes));
  }
  writer.write(file);
}

}  // namespace engine::session
