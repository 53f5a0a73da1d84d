// adamw8bit: bitsandbytes' 8-bit blockwise AdamW (bnb.optim.AdamW8bit): exp_avg and exp_avg_sq stored as uint8
// codes into bitsandbytes' dynamic quantization maps (signed for exp_avg, unsigned for exp_avg_sq) with one fp32
// absmax per block of 256 elements: 2 + 8/256 = 2.03 bytes of state per trainable element instead of 8. The
// math, the maps and the quantization are those of blockwise8.hpp (bitsandbytes' reference, cited there).
// CPU tensors are stepped in place by blockwise8.hpp's loops; CUDA tensors by one multi-tensor kernel launch
// per 16 tensors on the context's stream (kernels/adamw8bit_cuda.cu, bitwise equal to the CPU), compiled only
// in a build with the CUDA backend (ADAMW8BIT_WITH_CUDA), which then also declares ENG_CAP_DEVICE_CUDA.
//
// Recipe: [optimizer] plugin = "adamw8bit", lr, weight_decay, betas = [0.9, 0.999], eps = 1e-8,
// min_8bit_size = 4096 (as bitsandbytes: smaller parameters keep fp32 states).
// State in checkpoints, per parameter stepped at least once (bitsandbytes' state names): "<param>.state1",
// "<param>.state2" (u8 codes, the parameter's element count; f32 for an fp32-state parameter),
// "<param>.absmax1", "<param>.absmax2" (f32, one per block; 8-bit states only) and "<param>.step" (i64).
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "blockwise8.hpp"
#include "engine/cpp/json.hpp"
#include "engine/cpp/optimizer.hpp"
#if defined(ADAMW8BIT_WITH_CUDA)
#include "kernels/adamw8bit_cuda.cuh"
#endif

namespace adamw8bit {
namespace {

using engine::sdk::Error;
using engine::sdk::Host;
using engine::sdk::Json;
using engine::sdk::Param;
using engine::sdk::Tensor;

#if defined(ADAMW8BIT_WITH_CUDA)
constexpr uint64_t kCapabilities = ENG_CAP_DEVICE_CPU | ENG_CAP_DEVICE_CUDA;
#else
constexpr uint64_t kCapabilities = ENG_CAP_DEVICE_CPU;
#endif

constexpr char kSchema[] = R"json({"type": "object", "properties": {
  "betas": {"type": "array", "items": {"type": "number"}, "default": [0.9, 0.999], "description": "coefficients of the running averages of the gradient and its square"},
  "eps": {"type": "number", "default": 1e-8, "minimum": 0, "description": "added to the denominator for numerical stability"},
  "min_8bit_size": {"type": "integer", "default": 4096, "minimum": 0, "description": "parameters with fewer elements keep fp32 states (bitsandbytes' min_8bit_size)"}
}})json";

struct Slot {
  Param param;
  std::string name;
  eng_param_group group{};
  int64_t numel = 0;
  bool eight_bit = true;
  Tensor s1, s2;  // u8 codes (8-bit) or f32 states, (numel); empty until the first step
  Tensor a1, a2;  // f32 absmax, (blocks); 8-bit only
  int64_t steps = 0;
};

template <typename T>
T* data_of(const Tensor& t) {
  const DLTensor view = t.dlpack();
  return reinterpret_cast<T*>(static_cast<char*>(view.data) + view.byte_offset);
}

class AdamW8bit : public engine::sdk::Optimizer {
 public:
  AdamW8bit(Host&, const std::string& options_json) {
    Json o = Json::parse(options_json.empty() ? "{}" : options_json);
    for (const auto& [key, value] : o.members()) {
      (void)value;
      if (key != "lr" && key != "weight_decay" && key != "betas" && key != "eps" && key != "min_8bit_size") {
        throw Error("adamw8bit: unknown option '" + key +
                    "'; the options are lr, weight_decay, betas, eps, min_8bit_size");
      }
    }
    if (o.contains("betas")) {
      const auto& b = o["betas"].items();
      if (b.size() != 2) throw Error("adamw8bit: betas must be two numbers, e.g. [0.9, 0.999]");
      beta1_ = b[0].as_double();
      beta2_ = b[1].as_double();
    }
    eps_ = o.get("eps", 1e-8);
    const double min_size = o.get("min_8bit_size", 4096.0);
    if (!(beta1_ >= 0 && beta1_ < 1 && beta2_ >= 0 && beta2_ < 1)) {
      throw Error("adamw8bit: betas must lie in [0, 1), got [" + std::to_string(beta1_) + ", " +
                  std::to_string(beta2_) + "]");
    }
    if (!(eps_ >= 0)) throw Error("adamw8bit: eps must be >= 0");
    // In range before the cast (a double past int64's range would make the cast undefined).
    if (!(min_size >= 0 && min_size < 9.0e18) || min_size != std::floor(min_size)) {
      throw Error("adamw8bit: min_8bit_size must be a whole number >= 0, got " + std::to_string(min_size));
    }
    min_8bit_size_ = static_cast<int64_t>(min_size);
  }

  void add_param(Host& host, Param param, const eng_param_group& group) override {
    auto s = std::make_unique<Slot>();
    auto info = host.info(param);
    s->param = param;
    s->name = info.name;
    s->group = group;
    s->numel = 1;
    for (int64_t d : info.shape) s->numel *= d;
    s->eight_bit = s->numel >= min_8bit_size_;
    total_elements_ += s->numel;
    if (s->eight_bit) eight_bit_elements_ += s->numel;
    slots_.push_back(std::move(s));
  }

  void step(Host& host, const eng_optim_step& st) override {
    engine::sdk::NoGrad no_grad(host);
    std::vector<CudaWork> on_cuda;
    for (auto& s : slots_) {
      Tensor grad = host.grad(s->param);
      if (!grad) continue;
      Tensor value = host.value(s->param);
      if (value.dtype() != ENG_F32) {
        throw Error("adamw8bit: parameter " + s->name + " is stored as " +
                        engine::sdk::dtype_name(value.dtype()) +
                        "; trainable parameters must have an fp32 master",
                    ENG_ERR_UNSUPPORTED);
      }
      if (!value.is_contiguous() || value.numel() != s->numel || grad.numel() != s->numel) {
        throw Error("adamw8bit: parameter " + s->name +
                        " is not contiguous or its gradient has another size (an engine bug)",
                    ENG_ERR_INTERNAL);
      }
      if (!s->s1) allocate(host, *s);
      const DLDevice dev = value.dlpack().device;
      if (dev.device_type == kDLCPU) {
        if (grad.dtype() != ENG_F32) grad = host.cast(grad, ENG_F32);
        if (!grad.is_contiguous()) grad = host.contiguous(grad);
        s->steps += 1;
        const Coefficients c = coefficients(hyper(*s, st), s->steps);
        if (s->eight_bit) {
          update_8bit(value.data<float>(), grad.data<float>(), data_of<uint8_t>(s->s1), data_of<uint8_t>(s->s2),
                      data_of<float>(s->a1), data_of<float>(s->a2), s->numel, c);
        } else {
          update_32bit(value.data<float>(), grad.data<float>(), data_of<float>(s->s1), data_of<float>(s->s2),
                       s->numel, c);
        }
      } else if (dev.device_type == kDLCUDA) {
        on_cuda.push_back(prepare_cuda(host, *s, dev, std::move(value), std::move(grad)));
      } else {
        throw Error("adamw8bit: parameter " + s->name + " lives on DLPack device type " +
                        std::to_string(static_cast<int>(dev.device_type)) +
                        "; adamw8bit steps parameters on the CPU and on CUDA only",
                    ENG_ERR_UNSUPPORTED);
      }
    }
    if (!on_cuda.empty()) step_on_cuda(host, on_cuda, st);
  }

  void save_state(Host& host, eng_state st) override {
    for (auto& s : slots_) {
      if (s->steps == 0) continue;
      host.state_put(st, s->name + ".state1", s->s1);
      host.state_put(st, s->name + ".state2", s->s2);
      if (s->eight_bit) {
        host.state_put(st, s->name + ".absmax1", s->a1);
        host.state_put(st, s->name + ".absmax2", s->a2);
      }
      host.state_put(st, s->name + ".step", host.from_vector<int64_t>({1}, {s->steps}));
    }
  }

  void load_state(Host& host, eng_state st) override {
    for (auto& s : slots_) {
      Tensor step = host.state_try_get(st, s->name + ".step");
      if (!step) {
        s->steps = 0;
        s->s1 = s->s2 = s->a1 = s->a2 = Tensor();
        continue;
      }
      s->steps = host.to_vector<int64_t>(step).at(0);
      allocate(host, *s);
      const eng_dtype state_dtype = s->eight_bit ? ENG_U8 : ENG_F32;
      restore(host, st, *s, ".state1", s->s1, state_dtype, s->numel);
      restore(host, st, *s, ".state2", s->s2, state_dtype, s->numel);
      if (s->eight_bit) {
        restore(host, st, *s, ".absmax1", s->a1, ENG_F32, blocks_of(s->numel));
        restore(host, st, *s, ".absmax2", s->a2, ENG_F32, blocks_of(s->numel));
      }
    }
  }

  // What the memory plan counts per trainable element: two codes and two absmax per 256 (8-bit states), 8 bytes
  // for fp32-state parameters (below min_8bit_size), weighted by the parameters added so far.
  double state_bytes_per_element() override {
    const double eight = 2.0 + 8.0 / static_cast<double>(kBlock);
    if (total_elements_ == 0) return eight;
    const double f = static_cast<double>(eight_bit_elements_) / static_cast<double>(total_elements_);
    return f * eight + (1.0 - f) * 8.0;
  }

 private:
  struct CudaWork {
    Slot* slot;
    Tensor value;
    Tensor grad;
  };

  void allocate(Host& host, Slot& s) const {
    if (s.eight_bit) {
      s.s1 = host.zeros(ENG_U8, {s.numel});
      s.s2 = host.zeros(ENG_U8, {s.numel});
      s.a1 = host.zeros(ENG_F32, {blocks_of(s.numel)});
      s.a2 = host.zeros(ENG_F32, {blocks_of(s.numel)});
    } else {
      s.s1 = host.zeros(ENG_F32, {s.numel});
      s.s2 = host.zeros(ENG_F32, {s.numel});
    }
  }

  static void restore(Host& host, eng_state st, const Slot& s, const char* suffix, const Tensor& dst,
                      eng_dtype dtype, int64_t numel) {
    Tensor t = host.state_get(st, s.name + suffix);
    if (t.dtype() != dtype || t.numel() != numel) {
      throw Error("adamw8bit: the saved " + std::string(suffix + 1) + " of " + s.name + " is " +
                      engine::sdk::dtype_name(t.dtype()) + " with " + std::to_string(t.numel()) +
                      " elements, expected " + engine::sdk::dtype_name(dtype) + " with " + std::to_string(numel) +
                      "; the checkpoint belongs to another model, adapter configuration or min_8bit_size",
                  ENG_ERR_INVALID_ARGUMENT);
    }
    host.copy_(dst, host.reshape(t, dst.shape()));
  }

  Hyper hyper(const Slot& s, const eng_optim_step& st) const {
    Hyper h;
    h.lr = st.lr * (s.group.lr_scale == 0.0 ? 1.0 : s.group.lr_scale);
    h.beta1 = beta1_;
    h.beta2 = beta2_;
    h.eps = eps_;
    h.weight_decay = s.group.weight_decay;
    h.grad_scale = st.grad_scale;
    return h;
  }

  CudaWork prepare_cuda(Host& host, Slot& s, const DLDevice& dev, Tensor value, Tensor grad) const {
#if defined(ADAMW8BIT_WITH_CUDA)
    if (!host.on_cuda() || dev.device_id != host.device_index()) {
      throw Error("adamw8bit: parameter " + s.name + " is on cuda:" + std::to_string(dev.device_id) +
                      " but this call's context is for another device; the step runs on the context's stream",
                  ENG_ERR_INTERNAL);
    }
    const DLDevice sd = s.s1.dlpack().device;
    if (sd.device_type != dev.device_type || sd.device_id != dev.device_id) {
      throw Error("adamw8bit: the state of " + s.name + " is on another device than the parameter (an engine bug)",
                  ENG_ERR_INTERNAL);
    }
    if (grad.dtype() != ENG_F32 && grad.dtype() != ENG_BF16) grad = host.cast(grad, ENG_F32);
    if (!grad.is_contiguous()) grad = host.contiguous(grad);
    return CudaWork{&s, std::move(value), std::move(grad)};
#else
    (void)host;
    (void)dev;
    (void)value;
    (void)grad;
    throw Error("adamw8bit: parameter " + s.name +
                    " is on CUDA, but this adamw8bit plugin was built without the CUDA backend; rebuild with "
                    "CUDA or train on the CPU",
                ENG_ERR_UNSUPPORTED);
#endif
  }

  void step_on_cuda(Host& host, std::vector<CudaWork>& work, const eng_optim_step& st) {
#if defined(ADAMW8BIT_WITH_CUDA)
    std::vector<cuda::TensorArgs> args;
    args.reserve(work.size());
    for (CudaWork& w : work) {
      Slot& s = *w.slot;
      s.steps += 1;
      const Coefficients c = coefficients(hyper(s, st), s.steps);
      cuda::TensorArgs a;
      a.p = data_of<float>(w.value);
      a.g = static_cast<const void*>(data_of<char>(w.grad));
      a.s1 = data_of<char>(s.s1);
      a.s2 = data_of<char>(s.s2);
      a.a1 = s.eight_bit ? data_of<float>(s.a1) : nullptr;
      a.a2 = s.eight_bit ? data_of<float>(s.a2) : nullptr;
      a.n = s.numel;
      a.g_type = w.grad.dtype() == ENG_BF16 ? cuda::GradType::BF16 : cuda::GradType::F32;
      a.state_8bit = s.eight_bit ? 1 : 0;
      a.decayed = c.decayed ? 1 : 0;
      a.decay = c.decay;
      a.step_size = c.step_size;
      a.bc2_sqrt = c.bc2_sqrt;
      args.push_back(a);
    }
    const Coefficients c = coefficients(hyper(*work.front().slot, st), 1);
    cuda::SharedArgs shared;
    shared.b1 = c.b1;
    shared.one_minus_b1 = c.one_minus_b1;
    shared.b2 = c.b2;
    shared.one_minus_b2 = c.one_minus_b2;
    shared.eps = c.eps;
    shared.grad_scale = c.grad_scale;
    shared.scaled = c.scaled ? 1 : 0;
    shared.map1 = signed_map().data();
    shared.map2 = unsigned_map().data();
    const cudaError_t err = cuda::step(static_cast<cudaStream_t>(host.stream()), args.data(),
                                       static_cast<int64_t>(args.size()), shared);
    if (err != cudaSuccess) {
      throw Error(std::string("adamw8bit: the CUDA step of ") + std::to_string(args.size()) +
                      " parameters failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")",
                  ENG_ERR_INTERNAL);
    }
#else
    (void)host;
    (void)work;
    (void)st;
#endif
  }

  double beta1_ = 0.9;
  double beta2_ = 0.999;
  double eps_ = 1e-8;
  int64_t min_8bit_size_ = 4096;
  int64_t total_elements_ = 0;
  int64_t eight_bit_elements_ = 0;
  std::vector<std::unique_ptr<Slot>> slots_;
};

}  // namespace
}  // namespace adamw8bit

ENGINE_REGISTER_OPTIMIZER(adamw8bit::AdamW8bit, "adamw8bit", "1.0.0",
                          "bitsandbytes' 8-bit blockwise AdamW (uint8 states with per-block absmax, 2.03 B per "
                          "element)",
                          adamw8bit::kSchema, adamw8bit::kCapabilities)
