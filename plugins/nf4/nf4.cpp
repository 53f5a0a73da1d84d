// nf4: bitsandbytes' NF4 4-bit quantization of frozen linear weights (the QLoRA base), in bitsandbytes' storage
// format (nf4_format.hpp cites the source it follows). Weights are quantized as they are loaded, tensor by
// tensor, on the host (the packed codes and scales then live on the run's device: 0.516 B per weight with
// double quantization, 0.5625 B without). Embeddings and norms are never quantized (only ENG_ROLE_LINEAR
// weights are taken); `skip_modules` (default ["lm_head"], bitsandbytes' llm_int8_skip_modules) keeps the
// modules it names in full precision, matched by module name as transformers matches them: the name itself,
// or a dotted component path inside the module name ("lm_head", "mlp.down_proj", "layers.0").
//
// linear(x): one custom op (nf4.dequant_matmul) whose forward dequantizes the weight into a temporary buffer of
// x's dtype (the caching allocator hands back the same memory layer after layer) and multiplies, and whose
// backward dequantizes again for the input gradient: no dequantized weight is kept between forward and
// backward. Dequantization runs on the CPU (nf4_format.hpp) or, for CUDA tensors, in the plugin's own kernel
// (kernels/nf4_cuda.cu) on the context's stream; the CUDA kernel is built only with the CUDA backend
// (NF4_WITH_CUDA), which then also declares ENG_CAP_DEVICE_CUDA.
//
// save_state/load_state use bitsandbytes' serialisation of a Linear4bit weight (Params4bit), under
// "<prefix>" the packed codes (u8, (n / 2, 1)), "<prefix>.absmax" (f32, or u8 codes with double
// quantization), "<prefix>.quant_map" (the 16 codes), "<prefix>.nested_absmax", "<prefix>.nested_quant_map"
// and "<prefix>.quant_state.bitsandbytes__nf4" (a JSON blob as u8: quant_type, blocksize, dtype, shape,
// nested_blocksize, nested_offset), so load_state also reads bitsandbytes-4bit checkpoints.
//
// Recipe: [quantizer] plugin = "nf4", blocksize = 64, double_quant = true, skip_modules = ["lm_head"].
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/cpp/custom_op.hpp"
#include <nlohmann/json.hpp>

#include "engine/cpp/json.hpp"
#include "engine/cpp/quantizer.hpp"
#include "nf4_format.hpp"
#if defined(NF4_WITH_CUDA)
#include "kernels/nf4_cuda.cuh"
#endif

namespace nf4 {
namespace {

using engine::sdk::Error;
using engine::sdk::Host;
using engine::sdk::Json;
using engine::sdk::Param;
using engine::sdk::ParamInfo;
using engine::sdk::Tensor;

#if defined(NF4_WITH_CUDA)
constexpr uint64_t kCapabilities = ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA | ENG_QUANT_CAP_FROZEN_ONLY;
#else
constexpr uint64_t kCapabilities = ENG_CAP_DEVICE_CPU | ENG_QUANT_CAP_FROZEN_ONLY;
#endif

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "blocksize": {"type": "integer", "default": 64, "minimum": 2, "maximum": 4096, "description": "weights per absmax scale (bitsandbytes: 64)"},
  "double_quant": {"type": "boolean", "default": true, "description": "quantize the absmax scales to 8 bits (block 256, mean offset), bnb_4bit_use_double_quant"},
  "skip_modules": {"type": "array", "items": {"type": "string"}, "default": ["lm_head"], "description": "modules kept in full precision (llm_int8_skip_modules); embeddings and norms never are quantized"}
}})json";

struct Nf4Weight : engine::sdk::Quantizer::State {
  std::vector<int64_t> shape;  // (out, in)
  int64_t n = 0;
  int64_t blocksize = 64;
  bool double_quant = true;
  eng_dtype dtype = ENG_BF16;  // the weight's declared dtype (recorded in the quant state)
  Tensor packed;               // u8 (ceil(n / 2))
  Tensor absmax;               // f32 (blocks), or u8 codes with double quantization
  Tensor nested_absmax;        // f32 (ceil(blocks / 256)), double quantization only
  float offset = 0.0f;
  int64_t blocks() const { return (n + blocksize - 1) / blocksize; }
};

template <typename T>
T* data_of(const Tensor& t) {
  const DLTensor view = t.dlpack();
  return reinterpret_cast<T*>(static_cast<char*>(view.data) + view.byte_offset);
}

bool on_cpu(const Tensor& t) { return t.dlpack().device.device_type == kDLCPU; }

// Whether `module` (a parameter name without ".weight") is one of `skip` as transformers matches
// modules_to_not_convert: equal, or the key as a whole dotted component sequence inside the name.
bool skipped(const std::string& module, const std::vector<std::string>& skip) {
  const std::string dotted = "." + module + ".";
  for (const std::string& key : skip) {
    if (module == key || dotted.find("." + key + ".") != std::string::npos) return true;
  }
  return false;
}

// The weight dequantized into a new tensor of `dtype` (f32 or bf16) on the state's device.
Tensor dequantize_to(Host& host, const Nf4Weight& w, eng_dtype dtype) {
  if (dtype != ENG_F32 && dtype != ENG_BF16) {
    return host.cast(dequantize_to(host, w, ENG_F32), dtype);
  }
  Tensor out = host.empty(dtype, w.shape);
  if (on_cpu(w.packed)) {
    std::vector<float> absmax(static_cast<size_t>(w.blocks()));
    if (w.double_quant) {
      dequantize_absmax(data_of<uint8_t>(w.absmax), data_of<float>(w.nested_absmax), w.offset, w.blocks(),
                        absmax.data());
    } else {
      std::memcpy(absmax.data(), data_of<float>(w.absmax), absmax.size() * sizeof(float));
    }
    dequantize(data_of<uint8_t>(w.packed), absmax.data(), w.n, w.blocksize,
               dtype == ENG_F32 ? data_of<float>(out) : nullptr, dtype == ENG_BF16 ? data_of<uint16_t>(out) : nullptr);
    return out;
  }
#if defined(NF4_WITH_CUDA)
  cuda::Weight cw;
  cw.packed = data_of<uint8_t>(w.packed);
  cw.n = w.n;
  cw.blocksize = w.blocksize;
  if (w.double_quant) {
    cw.absmax_codes = data_of<uint8_t>(w.absmax);
    cw.nested_absmax = data_of<float>(w.nested_absmax);
    cw.offset = w.offset;
    cw.nested_code = adamw8bit::signed_map().data();
  } else {
    cw.absmax = data_of<float>(w.absmax);
  }
  const cudaError_t err = cuda::dequantize(static_cast<cudaStream_t>(host.stream()), cw, data_of<char>(out), dtype == ENG_BF16);
  if (err != cudaSuccess) {
    throw Error(std::string("nf4: the CUDA dequantize kernel failed: ") + cudaGetErrorName(err) + " (" +
                    cudaGetErrorString(err) + ")",
                ENG_ERR_INTERNAL);
  }
  return out;
#else
  throw Error("nf4: the weight lives on a GPU, but this nf4 plugin was built without the CUDA backend; rebuild "
              "with CUDA or run on the CPU",
              ENG_ERR_UNSUPPORTED);
#endif
}

// y = x W^T with W dequantized in forward and again in backward (dx = dy W); W takes no gradient.
class DequantMatmul : public engine::sdk::CustomOp {
 public:
  struct Attrs {
    const Nf4Weight* weight;
    eng_dtype x_dtype;  // backward's dx dtype (x itself is not kept)
  };
  std::vector<Tensor> forward(Host& host, const std::vector<Tensor>& in, const void* attrs) override {
    const Nf4Weight& w = *static_cast<const Attrs*>(attrs)->weight;
    engine::sdk::NoGrad no_grad(host);
    Tensor wt = dequantize_to(host, w, in[0].dtype());
    return {host.matmul(in[0], wt, false, true)};
  }
  // Registered with ENG_CUSTOM_OP_BACKWARD_NO_INPUTS | _NO_OUTPUTS: x and y are empty here.
  std::vector<Tensor> backward(Host& host, const std::vector<Tensor>&, const std::vector<Tensor>&,
                               const std::vector<Tensor>& grad_out, const void* attrs,
                               const std::vector<bool>& needs_grad) override {
    if (!needs_grad[0]) return {Tensor()};
    const Nf4Weight& w = *static_cast<const Attrs*>(attrs)->weight;
    engine::sdk::NoGrad no_grad(host);
    const eng_dtype x_dtype = static_cast<const Attrs*>(attrs)->x_dtype;
    Tensor wt = dequantize_to(host, w, grad_out[0].dtype());
    Tensor dx = host.matmul(grad_out[0], wt, false, false);
    if (dx.dtype() != x_dtype) dx = host.cast(dx, x_dtype);
    return {dx};
  }
};

class Nf4 : public engine::sdk::Quantizer {
 public:
  Nf4(Host& host, const std::string& options_json) {
    Json o = Json::parse(options_json.empty() ? "{}" : options_json);
    for (const auto& [key, value] : o.members()) {
      (void)value;
      if (key != "blocksize" && key != "double_quant" && key != "skip_modules") {
        throw Error("nf4: unknown option '" + key + "'; the options are blocksize, double_quant, skip_modules");
      }
    }
    const double bs = o.get("blocksize", 64.0);
    if (!(bs >= 2 && bs <= 4096) || bs != static_cast<double>(static_cast<int64_t>(bs)) ||
        static_cast<int64_t>(bs) % 2 != 0) {
      // The value as written: 63, not 63.000000 (a whole number in range prints without a fraction).
      const bool whole = bs == std::floor(bs) && std::fabs(bs) < 1e15;
      throw Error("nf4: blocksize must be an even whole number in [2, 4096] (bitsandbytes uses 64), got " +
                  (whole ? std::to_string(static_cast<long long>(bs)) : std::to_string(bs)));
    }
    blocksize_ = static_cast<int64_t>(bs);
    if (o.contains("double_quant")) double_quant_ = o["double_quant"].as_bool();
    if (o.contains("skip_modules")) {
      skip_.clear();
      if (!o["skip_modules"].is_array()) throw Error("nf4: skip_modules must be a list of module names");
      for (const auto& m : o["skip_modules"].items()) {
        if (!m.is_string() || m.as_string().empty())
          throw Error("nf4: skip_modules must list module names as non-empty strings, e.g. [\"lm_head\"]");
        skip_.push_back(m.as_string());
      }
    }
    // backward needs neither x nor y (dx = dy W): the engine keeps neither alive for it, so a checkpointed
    // block's replay holds no (tokens, out) base outputs (2.3 GiB for gate and up at 32k tokens on a 7B).
    op_id_ = op_.register_with(host, "nf4.dequant_matmul", 1, 1, sizeof(DequantMatmul::Attrs),
                               ENG_CUSTOM_OP_BACKWARD_NO_INPUTS | ENG_CUSTOM_OP_BACKWARD_NO_OUTPUTS);
  }

  bool takes(const ParamInfo& p) override {
    if (p.role != ENG_ROLE_LINEAR || p.shape.size() != 2) return false;
    const std::string suffix = ".weight";
    std::string module = p.name;
    if (module.size() > suffix.size() && module.compare(module.size() - suffix.size(), suffix.size(), suffix) == 0)
      module.resize(module.size() - suffix.size());
    return !skipped(module, skip_);
  }

  std::unique_ptr<State> quantize(Host& host, Param, const Tensor& value) override {
    auto w = std::make_unique<Nf4Weight>();
    w->shape = value.shape();
    if (w->shape.size() != 2) throw Error("nf4: can only quantize (out, in) weights", ENG_ERR_INVALID_ARGUMENT);
    w->n = value.numel();
    w->blocksize = blocksize_;
    w->double_quant = double_quant_;
    w->dtype = value.dtype();
    if (!on_cpu(value)) return quantize_on_gpu(host, std::move(w), value);
    const std::vector<float> x = host.to_vector<float>(value.dtype() == ENG_F32 ? value : host.cast(value, ENG_F32));
    std::vector<uint8_t> packed(static_cast<size_t>((w->n + 1) / 2));
    std::vector<float> absmax(static_cast<size_t>(w->blocks()));
    nf4::quantize(x.data(), w->n, w->blocksize, packed.data(), absmax.data());
    w->packed = host.from_vector<uint8_t>({static_cast<int64_t>(packed.size())}, packed);
    store_absmax(host, *w, absmax);
    return w;
  }

  Tensor linear(Host& host, State& state, const Tensor& x) override {
    const auto& w = static_cast<const Nf4Weight&>(state);
    if (x.shape().empty() || x.shape().back() != w.shape[1]) {
      throw Error("nf4: linear input has " + std::to_string(x.shape().empty() ? 0 : x.shape().back()) +
                      " features, the weight expects " + std::to_string(w.shape[1]),
                  ENG_ERR_INVALID_ARGUMENT);
    }
    DequantMatmul::Attrs attrs{&w, x.dtype()};
    return host.custom(op_id_, {x}, &attrs, 1).at(0);
  }

  Tensor dequantize(Host& host, State& state, eng_dtype dtype) override {
    return dequantize_to(host, static_cast<const Nf4Weight&>(state), dtype);
  }

  double bytes_per_element() override {
    const double b = static_cast<double>(blocksize_);
    return double_quant_ ? 0.5 + 1.0 / b + 4.0 / (b * static_cast<double>(kNestedBlock)) : 0.5 + 4.0 / b;
  }

  void save_state(Host& host, State& state, eng_state st, const std::string& prefix) override {
    const auto& w = static_cast<const Nf4Weight&>(state);
    host.state_put(st, prefix, host.reshape(w.packed, {w.packed.numel(), 1}));
    host.state_put(st, prefix + ".absmax", w.absmax);
    host.state_put(st, prefix + ".quant_map", host.from_vector<float>({16}, std::vector<float>(kCode, kCode + 16)));
    if (w.double_quant) {
      host.state_put(st, prefix + ".nested_absmax", w.nested_absmax);
      const auto& m = adamw8bit::signed_map();
      host.state_put(st, prefix + ".nested_quant_map", host.from_vector<float>({256}, std::vector<float>(m.begin(), m.end())));
    }
    nlohmann::json qs;
    qs["quant_type"] = "nf4";
    qs["blocksize"] = w.blocksize;
    qs["dtype"] = w.dtype == ENG_F32 ? "float32" : w.dtype == ENG_F16 ? "float16" : "bfloat16";
    qs["shape"] = w.shape;
    if (w.double_quant) {
      qs["nested_blocksize"] = kNestedBlock;
      qs["nested_offset"] = w.offset;
    }
    const std::string blob = qs.dump();
    host.state_put(st, prefix + ".quant_state.bitsandbytes__nf4",
                   host.from_vector<uint8_t>({static_cast<int64_t>(blob.size())}, std::vector<uint8_t>(blob.begin(), blob.end())));
  }

  // The tensors bitsandbytes stores beside a 4-bit weight "<name>" (QuantState.as_dict(packed=True)); an fp4
  // quant state is owned too, so that load_state refuses it by name.
  bool owns(const ParamInfo& param, const std::string& stored) override {
    static const char* const kSuffixes[] = {".absmax",           ".quant_map",
                                            ".nested_absmax",    ".nested_quant_map",
                                            ".quant_state.bitsandbytes__nf4", ".quant_state.bitsandbytes__fp4"};
    for (const char* suffix : kSuffixes)
      if (stored == param.name + suffix) return true;
    return false;
  }

  std::unique_ptr<State> load_state(Host& host, Param param, eng_state st, const std::string& prefix) override {
    const ParamInfo info = host.info(param);
    const std::string what = "nf4: the pre-quantized weight " + prefix;
    Tensor blob_t = host.state_try_get(st, prefix + ".quant_state.bitsandbytes__nf4");
    if (!blob_t) {
      throw Error(what + " has no quant_state.bitsandbytes__nf4 entry; only bitsandbytes NF4 checkpoints "
                         "(bnb_4bit_quant_type=\"nf4\") can be loaded pre-quantized",
                  ENG_ERR_INVALID_ARGUMENT);
    }
    const std::vector<uint8_t> blob = host.to_vector<uint8_t>(blob_t);
    Json qs = Json::parse(std::string(blob.begin(), blob.end()));
    if (!qs.contains("quant_type") || qs["quant_type"].as_string() != "nf4") {
      throw Error(what + " is quantized as '" + (qs.contains("quant_type") ? qs["quant_type"].as_string() : "?") +
                      "'; the nf4 quantizer reads NF4 only",
                  ENG_ERR_UNSUPPORTED);
    }
    auto w = std::make_unique<Nf4Weight>();
    w->blocksize = static_cast<int64_t>(qs["blocksize"].as_double());
    for (const auto& d : qs["shape"].items()) w->shape.push_back(static_cast<int64_t>(d.as_double()));
    if (w->shape != info.shape) {
      throw Error(what + " has shape " + shape_str(w->shape) + ", the model declares " + shape_str(info.shape),
                  ENG_ERR_INVALID_ARGUMENT);
    }
    w->n = info.numel();
    const std::string dt = qs.contains("dtype") ? qs["dtype"].as_string() : "bfloat16";
    w->dtype = dt == "float32" ? ENG_F32 : dt == "float16" ? ENG_F16 : ENG_BF16;
    Tensor code = host.state_try_get(st, prefix + ".quant_map");
    if (code) {
      const std::vector<float> c = host.to_vector<float>(host.cast(code, ENG_F32));
      if (c.size() != 16 || std::memcmp(c.data(), kCode, sizeof(kCode)) != 0)
        throw Error(what + " has a quant_map other than bitsandbytes' NF4 code book", ENG_ERR_UNSUPPORTED);
    }
    Tensor packed = host.state_get(st, prefix);
    if (packed.dtype() != ENG_U8 || packed.numel() != (w->n + 1) / 2) {
      throw Error(what + " holds " + std::to_string(packed.numel()) + " " + engine::sdk::dtype_name(packed.dtype()) +
                      " values, expected " + std::to_string((w->n + 1) / 2) + " u8 (two 4-bit codes per byte)",
                  ENG_ERR_INVALID_ARGUMENT);
    }
    w->packed = host.zeros(ENG_U8, {packed.numel()});
    host.copy_(w->packed, host.reshape(packed, {packed.numel()}));
    Tensor absmax = host.state_get(st, prefix + ".absmax");
    if (absmax.numel() != w->blocks())
      throw Error(what + ".absmax has " + std::to_string(absmax.numel()) + " values, expected " +
                      std::to_string(w->blocks()) + " (one per block of " + std::to_string(w->blocksize) + ")",
                  ENG_ERR_INVALID_ARGUMENT);
    w->double_quant = qs.contains("nested_offset");
    if (w->double_quant) {
      if (absmax.dtype() != ENG_U8) throw Error(what + ".absmax must be u8 codes with double quantization", ENG_ERR_INVALID_ARGUMENT);
      const int64_t nb = qs.contains("nested_blocksize") ? static_cast<int64_t>(qs["nested_blocksize"].as_double()) : 256;
      if (nb != kNestedBlock)
        throw Error(what + " uses nested_blocksize " + std::to_string(nb) + "; the nf4 plugin reads 256 (bitsandbytes' default)", ENG_ERR_UNSUPPORTED);
      Tensor nmap = host.state_try_get(st, prefix + ".nested_quant_map");
      if (nmap) {
        const std::vector<float> m = host.to_vector<float>(host.cast(nmap, ENG_F32));
        if (m.size() != 256 || std::memcmp(m.data(), adamw8bit::signed_map().data(), 256 * sizeof(float)) != 0)
          throw Error(what + ".nested_quant_map is not bitsandbytes' signed dynamic map", ENG_ERR_UNSUPPORTED);
      }
      w->offset = static_cast<float>(qs["nested_offset"].as_double());
      w->absmax = host.zeros(ENG_U8, {w->blocks()});
      host.copy_(w->absmax, host.reshape(absmax, {w->blocks()}));
      Tensor nested = host.state_get(st, prefix + ".nested_absmax");
      const int64_t nn = (w->blocks() + kNestedBlock - 1) / kNestedBlock;
      if (nested.numel() != nn) throw Error(what + ".nested_absmax has " + std::to_string(nested.numel()) + " values, expected " + std::to_string(nn), ENG_ERR_INVALID_ARGUMENT);
      w->nested_absmax = host.zeros(ENG_F32, {nn});
      host.copy_(w->nested_absmax, host.cast(host.reshape(nested, {nn}), ENG_F32));
    } else {
      w->absmax = host.zeros(ENG_F32, {w->blocks()});
      host.copy_(w->absmax, host.cast(host.reshape(absmax, {w->blocks()}), ENG_F32));
    }
    return w;
  }

 private:
  static std::string shape_str(const std::vector<int64_t>& s) {
    std::string out = "(";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + ")";
  }

  // The weight is on the GPU (a 7B model is never in full on the host): codes and absmax by the plugin's
  // kernel, bitwise the CPU's; the double quantization of the (64 times fewer) absmax values on the host.
  std::unique_ptr<State> quantize_on_gpu(Host& host, std::unique_ptr<Nf4Weight> w, const Tensor& value) const {
#if defined(NF4_WITH_CUDA)
    Tensor in = value;
    if (in.dtype() != ENG_F32 && in.dtype() != ENG_BF16) in = host.cast(in, ENG_F32);
    if (!in.is_contiguous()) in = host.contiguous(in);
    w->packed = host.empty(ENG_U8, {(w->n + 1) / 2});
    Tensor absmax = host.empty(ENG_F32, {w->blocks()});
    const cudaError_t err = cuda::quantize(static_cast<cudaStream_t>(host.stream()), data_of<char>(in),
                                           in.dtype() == ENG_BF16, w->n, w->blocksize, data_of<uint8_t>(w->packed),
                                           data_of<float>(absmax));
    if (err != cudaSuccess) {
      throw Error(std::string("nf4: the CUDA quantize kernel failed: ") + cudaGetErrorName(err) + " (" +
                      cudaGetErrorString(err) + ")",
                  ENG_ERR_INTERNAL);
    }
    if (w->double_quant) {
      store_absmax(host, *w, host.to_vector<float>(absmax));
    } else {
      w->absmax = absmax;
    }
    return w;
#else
    (void)host;
    (void)w;
    (void)value;
    throw Error("nf4: the weight lives on a GPU, but this nf4 plugin was built without the CUDA backend; rebuild "
                "with CUDA or run on the CPU",
                ENG_ERR_UNSUPPORTED);
#endif
  }

  void store_absmax(Host& host, Nf4Weight& w, const std::vector<float>& absmax) const {
    if (!w.double_quant) {
      w.absmax = host.from_vector<float>({w.blocks()}, absmax);
      return;
    }
    std::vector<uint8_t> codes(absmax.size());
    std::vector<float> nested(static_cast<size_t>((w.blocks() + kNestedBlock - 1) / kNestedBlock));
    w.offset = quantize_absmax(absmax.data(), w.blocks(), codes.data(), nested.data());
    w.absmax = host.from_vector<uint8_t>({w.blocks()}, codes);
    w.nested_absmax = host.from_vector<float>({static_cast<int64_t>(nested.size())}, nested);
  }

  int64_t blocksize_ = 64;
  bool double_quant_ = true;
  std::vector<std::string> skip_ = {"lm_head"};
  DequantMatmul op_;
  eng_op_id op_id_{};
};

}  // namespace
}  // namespace nf4

ENGINE_REGISTER_QUANTIZER(nf4::Nf4, "nf4", "1.0.0",
                          "bitsandbytes NF4 4-bit weights (block 64, double-quantized scales; 0.516 B per weight)",
                          nf4::kSchema, nf4::kCapabilities)
