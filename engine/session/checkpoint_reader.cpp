// Streaming a checkpoint into the parameter store (see checkpoint_reader.hpp).
#include "engine/session/checkpoint_reader.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"

namespace engine::session {

namespace {

bool is_float(eng_dtype d) { return d == ENG_F32 || d == ENG_BF16 || d == ENG_F16 || d == ENG_F64; }

// n elements of `dtype` from possibly unaligned bytes -> floats
void to_f32(const std::byte* src, eng_dtype dtype, int64_t n, float* out) {
  switch (dtype) {
    case ENG_F32:
      std::memcpy(out, src, static_cast<size_t>(n) * 4);
      return;
    case ENG_BF16:
    case ENG_F16: {
      for (int64_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        out[i] = dtype == ENG_BF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
      }
      return;
    }
    case ENG_F64:
      for (int64_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, src + 8 * i, 8);
        out[i] = static_cast<float>(v);
      }
      return;
    default:
      fail("internal: to_f32 on a non-float dtype");
  }
}

// floats -> n elements of `dtype` into aligned memory
void from_f32(const float* src, eng_dtype dtype, int64_t n, void* out) {
  switch (dtype) {
    case ENG_F32:
      std::memcpy(out, src, static_cast<size_t>(n) * 4);
      return;
    case ENG_BF16:
      f32_to_bf16(src, static_cast<uint16_t*>(out), static_cast<size_t>(n));
      return;
    case ENG_F16:
      f32_to_f16(src, static_cast<uint16_t*>(out), static_cast<size_t>(n));
      return;
    case ENG_F64:
      for (int64_t i = 0; i < n; ++i) static_cast<double*>(out)[i] = src[i];
      return;
    default:
      fail("internal: from_f32 on a non-float dtype");
  }
}

}  // namespace

void read_tensor_into(const io::SafetensorsTensor& src, rt::Tensor& dst, const std::string& where) {
  const rt::Dims src_shape = rt::Dims::from(std::vector<int64_t>(src.shape.begin(), src.shape.end()));
  if (src_shape != dst.shape()) {
    fail(
        "{}: tensor '{}' has shape {} in the checkpoint, the model declares {}; the checkpoint does not "
        "match "
        "this config.json",
        where, src.name, src_shape.str(), dst.shape().str());
  }
  if (!src.engine_dtype) {
    fail("{}: tensor '{}' has dtype {}, which the engine cannot load (use F32, BF16 or F16 weights)", where,
         src.name, src.dtype_name);
  }
  const eng_dtype from = *src.engine_dtype, to = dst.dtype();
  const int64_t n = dst.numel();
  const bool contiguous_cpu = dst.is_contiguous() && dst.device().type() == rt::DeviceType::CPU;
  if (from == to && contiguous_cpu) {  // the common case: one copy from the mapped file
    std::memcpy(dst.raw_data(), src.data, src.nbytes);
    return;
  }
  if (from == to && dst.is_contiguous()) {  // another device: straight from the mapped file (the device stages it)
    dst.device().copy_from_host(dst.raw_data(), src.data, src.nbytes);
    return;
  }
  if (from == to) {  // integers or same-dtype copies to another layout, in one staging tensor
    rt::Tensor staged = rt::Tensor::from_host(dst.shape(), to, dst.device(), src.data, src.nbytes);
    dst.copy_from(staged);
    return;
  }
  if (!is_float(from) || !is_float(to)) {
    fail(
        "{}: tensor '{}' is {} in the checkpoint but the parameter is stored as {}; only float types convert",
        where, src.name, src.dtype_name, rt::dtype_name(to));
  }
  // chunked conversion through one bounded host buffer
  std::vector<float> f32(static_cast<size_t>(std::min(n, kChunkElements)));
  const size_t in_size = rt::dtype_size(from), out_size = rt::dtype_size(to);
  if (contiguous_cpu) {
    for (int64_t i = 0; i < n; i += kChunkElements) {
      const int64_t m = std::min(kChunkElements, n - i);
      to_f32(src.data + static_cast<size_t>(i) * in_size, from, m, f32.data());
      from_f32(f32.data(), to, m,
               static_cast<std::byte*>(dst.raw_data()) + static_cast<size_t>(i) * out_size);
    }
    return;
  }
  // another device or layout: convert chunks of the flattened tensor and copy each into its rows
  rt::Tensor flat = dst.is_contiguous() ? dst.view(rt::Dims{n}) : rt::Tensor();
  if (!flat.defined()) {
    rt::Tensor whole = rt::Tensor::empty(dst.shape(), to, dst.device());
    read_tensor_into(src, whole, where);
    dst.copy_from(whole);
    return;
  }
  std::vector<std::byte> out(static_cast<size_t>(std::min(n, kChunkElements)) * out_size);
  for (int64_t i = 0; i < n; i += kChunkElements) {
    const int64_t m = std::min(kChunkElements, n - i);
    to_f32(src.data + static_cast<size_t>(i) * in_size, from, m, f32.data());
    from_f32(f32.data(), to, m, out.data());
    rt::Tensor piece = flat.sliced(0, i, i + m);
    dst.device().copy_from_host(piece.raw_data(), out.data(), static_cast<size_t>(m) * out_size);
  }
}

rt::LoadReport load_checkpoint(rt::ParamStore& store, const io::SafetensorsCheckpoint& checkpoint,
                               const CheckpointLoadOptions& options) {
  std::vector<std::string> names;
  names.reserve(checkpoint.names().size());
  for (const std::string& name : checkpoint.names()) {
    if (options.tied_lm_head && name == "lm_head.weight" && store.find(name) == nullptr) continue;
    names.push_back(name);
  }
  const std::string where = checkpoint.dir().string();
  rt::LoadOptions lo = options.store;
  lo.read_stored = [&](const std::string& name) {
    const io::SafetensorsTensor& src = checkpoint.tensor(name);
    if (!src.engine_dtype) fail("{}: tensor '{}' has dtype {}, which the engine cannot load", where, name, src.dtype_name);
    return rt::Tensor::from_host(rt::Dims::from(std::vector<int64_t>(src.shape.begin(), src.shape.end())),
                                 *src.engine_dtype, store.device(), src.data, src.nbytes);
  };
  return rt::load_params(
      store, names,
      [&](const std::string& name, rt::Tensor& dst) {
        read_tensor_into(checkpoint.tensor(name), dst, where);
        return true;
      },
      lo);
}

}  // namespace engine::session
